"""Training methods; one module each, with a settings model and a `run(settings)` entry point."""
