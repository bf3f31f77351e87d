"""Models: a registry of aliases, fetching into a local cache, and loading (with adapters)."""

from knowtune.models.load import (load_for_answering, load_for_inference, load_model_and_tokenizer, load_tokenizer,  # noqa: F401
                                  resolve_model_dir)
from knowtune.models.registry import DEFAULT_MODEL, REGISTRY, ModelSource  # noqa: F401
