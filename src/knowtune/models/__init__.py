"""Models: a registry of aliases, fetching into a local cache, and loading (with adapters)."""

from knowtune.models.load import load_for_inference, load_model_and_tokenizer, load_tokenizer, resolve_model_dir  # noqa: F401
from knowtune.models.registry import DEFAULT_MODEL, REGISTRY, ModelSource  # noqa: F401
