"""knowtune: teach a pre-trained language model your own knowledge, and prove what it learned."""

__version__ = "0.1.0"
