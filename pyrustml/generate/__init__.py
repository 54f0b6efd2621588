"""Turning logits into text: sampling, stop strings, prompt lookup, the Generation result."""
