"""Measuring it: the per-step report, the performance audit and the end-to-end benchmark."""
