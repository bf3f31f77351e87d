"""Augmentation with a generator model: backends (OpenAI-compatible endpoints, local models) and facts from documents."""
