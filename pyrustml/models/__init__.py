"""Architectures, chosen from config.json's model_type through the registry."""
