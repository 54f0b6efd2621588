"""What comes from disk or the hub: safetensors, configs, tokenizers, chat templates, and weights
quantized into engine matrices while they are read."""
