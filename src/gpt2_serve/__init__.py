"""gpt2-serve: the Write With Transformer web app and an OpenAI-compatible completions server over the core
scheduler (continuous batching), for either backend."""
