"""OpenAI-compatible serving of a base model or a taught run."""
