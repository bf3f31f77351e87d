"""`knowtune export RUN --format hf|gguf`: a taught model as files other engines load, checked to answer the same.

hf      the merged model as a plain transformers folder (safetensors in --dtype, the tokenizer with its chat
        template, the generation config): `AutoModelForCausalLM.from_pretrained` and vLLM load it with no
        knowtune code.
gguf    one GGUF file written with the `gguf` package (llama.cpp's own reader/writer library): hyper-parameters,
        the byte-level BPE tokenizer (tokens, their types, merges, special ids) and the chat template in the
        metadata; tensors named by gguf's TensorNameMap, in f32/f16/bf16 or quantised to q8_0/q4_0 by gguf.quants;
        an Ollama Modelfile beside it. Llama attention weights are stored in llama.cpp's rotary layout (query and
        key rows interleaved per head), the layout every llama GGUF has and transformers' loader undoes.
parity  after every export the run's held-out probes and its general-knowledge questions are answered by the
        exported files (a GGUF through transformers' GGUF loader), next to the run's own audit of the same
        questions. export.json records both; a difference beyond the tolerance fails the export (exit 1), with
        the files kept for inspection.

Why our own GGUF writer around the `gguf` package: llama.cpp's converter (convert_hf_to_gguf.py) is a script in
its repository, not in the package; what remains here is the metadata and the tensor walk for the architectures
the registry ships (llama, qwen2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from knowtune.errors import KnowtuneError

FORMATS = ("hf", "gguf")
DTYPES = ("f16", "bf16", "f32")
QUANTS = ("q8_0", "q4_0")
TOLERANCE = {None: 0.02, "q8_0": 0.05, "q4_0": 0.10}  # accuracy points the export may differ from the run's audit
GGUF_ARCHITECTURES = {"llama": {"rotary_layout": True}, "qwen2": {"rotary_layout": False}}


@dataclass
class ExportArgs:
    run: Path
    format: str
    out: Path | None = None
    dtype: str = "f16"
    quant: str | None = None
    tolerance: float | None = None

    def __post_init__(self):
        self.run = Path(self.run)
        if self.format not in FORMATS:
            raise KnowtuneError(f"--format {self.format}: not a format knowtune writes.", fix=f"use one of {', '.join(FORMATS)}.")
        if self.dtype not in DTYPES:
            raise KnowtuneError(f"--dtype {self.dtype}: not one of {', '.join(DTYPES)}.", fix="use f16 (the default), bf16 or f32.")
        if self.quant is not None and self.quant not in QUANTS:
            raise KnowtuneError(f"--quant {self.quant}: not one of {', '.join(QUANTS)}.", fix="use q8_0 or q4_0, or leave it out.")
        if self.quant and self.format != "gguf":
            raise KnowtuneError("--quant applies to GGUF files only.", fix="add --format gguf, or leave --quant out.")
        if self.tolerance is None:
            self.tolerance = TOLERANCE[self.quant]
        if self.out is None:
            self.out = (self.run / "export" / "hf" if self.format == "hf"
                        else self.run / "export" / f"{self.run.name}-{self.quant or self.dtype}.gguf")
        self.out = Path(self.out)
        if self.format == "gguf" and self.out.suffix != ".gguf":
            raise KnowtuneError(f"--out {self.out}: a GGUF file's name ends in .gguf.", fix=f"use --out {self.out}.gguf.")


def run_audit_of(run: Path) -> dict:
    """The run's audit.json (what the export is compared with); a clear error for anything else."""
    if not (run / "config.yaml").exists():
        raise KnowtuneError(f"{run}: not a knowtune run folder (no config.yaml).",
                            fix="give the --out folder of a finished `knowtune teach` (or other method) run.")
    path = run / "audit.json"
    if not path.exists():
        raise KnowtuneError(f"{run}: the run has no audit.json, so there is nothing to check the export against.",
                            fix=f"finish the run (`knowtune teach ... --out {run} --resume`); a run taught without "
                                "its audit can be audited with `knowtune eval`.")
    audit = json.loads(path.read_text())
    if not audit.get("after", {}).get("probes"):
        raise KnowtuneError(f"{path}: the audit holds no held-out probes to compare the export on.",
                            fix="teach with data that has held-out phrasings (a knowledge pack) or a --probes file.")
    return audit


def export(a: ExportArgs, log=print) -> dict:
    """Write the export, check its answers against the run's audit, record both in export.json; raises when the
    parity check fails (the files stay)."""
    from knowtune.io import write_json
    from knowtune.models.load import load_for_inference
    from knowtune.progress import library_output, phase

    audit = run_audit_of(a.run)
    with phase(f"Merging {a.run} for export"), library_output(None, False):
        model, tokenizer = load_for_inference(str(a.run), log=log)
    with phase(f"Writing {a.out}"), library_output(None, False):  # transformers' shard bars stay off the console
        if a.format == "hf":
            write_hf(model, tokenizer, a.out, a.dtype)
        else:
            write_gguf(model, tokenizer, a.out, a.dtype, a.quant, pre_tokenizer(str(a.run)), name=a.run.name)
            write_modelfile(a.out, tokenizer)
    del model
    checked = parity(a, audit, log)
    record = {"run": str(a.run), "format": a.format, "path": str(a.out), "dtype": a.dtype, "quant": a.quant,
              "bytes": sum(f.stat().st_size for f in ([a.out] if a.out.is_file() else a.out.rglob("*")) if f.is_file()),
              **checked}
    where = a.out / "export.json" if a.out.is_dir() else a.out.with_suffix(".export.json")
    write_json(where, record)
    if not checked["passed"]:
        raise KnowtuneError(
            f"The export at {a.out} does not answer like the run: held-out {pts(checked['held_out'])}, general "
            f"knowledge {pts(checked['retention'])}, tolerance {100 * a.tolerance:.0f} points (figures in {where}).",
            fix="export at a higher precision (--dtype f32, or q8_0 instead of q4_0), or pass --tolerance if the "
                "difference is acceptable for your use.")
    return record


def pts(pair: dict) -> str:
    return f"{100 * pair['export']:.1f}% vs the run's {100 * pair['run']:.1f}%"


# ---------------------------------------------------------------------------------------------------------- hf

def write_hf(model, tokenizer, folder: Path, dtype: str) -> Path:
    """The merged model as a transformers folder in `dtype`, with tokenizer, chat template and generation config."""
    import torch

    from knowtune.io import save_pretrained_atomic

    model = model.to({"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[dtype])
    model.config.dtype = model.dtype
    folder.parent.mkdir(parents=True, exist_ok=True)
    return save_pretrained_atomic(folder, model, tokenizer)


# -------------------------------------------------------------------------------------------------------- gguf

def pre_tokenizer(ref: str) -> str:
    """llama.cpp's name for how the tokenizer splits text before BPE (tokenizer.ggml.pre): the registry's, for a
    run whose base (followed through runs) is a registry model; "default" (GPT-2's split) otherwise."""
    from knowtune.models import fetch
    from knowtune.models.load import base_of
    from knowtune.models.registry import REGISTRY

    ref = base_of(ref)
    alias = ref if ref in REGISTRY else fetch.read_marker(Path(ref)).get("alias") if Path(ref).is_dir() else None
    return REGISTRY[alias].gguf_pre if alias in REGISTRY else "default"


def rotary_layout(w, heads: int):
    """Query/key projection rows from transformers' rotary layout (each head's first half, then its second
    half) into llama.cpp's (the two halves interleaved, pair by pair)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def token_table(tokenizer, n_vocab: int):
    """Every token by id with its GGUF type (control for special tokens, user-defined for other added ones),
    padded with unused placeholders up to the model's embedding rows."""
    import gguf

    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    decoder = tokenizer.added_tokens_decoder  # as llama.cpp's converter reads it: special added tokens are control
    special = {i for i, t in decoder.items() if t.special} | set(tokenizer.all_special_ids)
    added = set(decoder)
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added
             else gguf.TokenType.NORMAL for i in range(len(tokens))]
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    if len(tokens) > n_vocab:
        raise KnowtuneError(f"The tokenizer has {len(tokens)} tokens but the model only {n_vocab} embedding rows.",
                            fix="this model cannot be written as GGUF; export --format hf instead.")
    return tokens, types


def write_gguf(model, tokenizer, path: Path, dtype: str, quant: str | None, pre: str, name: str | None = None) -> Path:
    """The model as one GGUF file, written to a temporary name and renamed into place."""
    import tempfile

    import gguf
    import numpy as np

    config = model.config
    kind = config.model_type
    if kind not in GGUF_ARCHITECTURES:
        raise KnowtuneError(f"GGUF export knows the architectures {', '.join(GGUF_ARCHITECTURES)}; this model is {kind!r}.",
                            fix="export --format hf (llama.cpp's own convert_hf_to_gguf.py can convert that folder).")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise KnowtuneError(f"GGUF export does not write rope scaling ({rope}).", fix="export --format hf.")
    backend = json.loads(tokenizer.backend_tokenizer.to_str()) if getattr(tokenizer, "is_fast", False) else {}
    if backend.get("model", {}).get("type") != "BPE" or (backend.get("decoder") or {}).get("type") != "ByteLevel":
        raise KnowtuneError("GGUF export writes byte-level BPE tokenizers (as the registry's models have) only.",
                            fix="export --format hf.")
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[kind]
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if kind == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise KnowtuneError("GGUF export writes llama models without attention or MLP biases only.", fix="export --format hf.")
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if tied:
        state.pop("lm_head.weight", None)
    n_vocab = state["model.embed_tokens.weight"].shape[0]
    float_type = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
                  "f32": gguf.GGMLQuantizationType.F32}[dtype]
    quant_type = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}.get(quant)
    file_type = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}.get(
        quant, {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                "f32": gguf.LlamaFileType.ALL_F32}[dtype])

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:  # a file cut short (an error, Ctrl-C) never stays behind
        w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
        w.add_name(name or path.stem)
        w.add_context_length(config.max_position_embeddings)
        w.add_embedding_length(config.hidden_size)
        w.add_block_count(config.num_hidden_layers)
        w.add_feed_forward_length(config.intermediate_size)
        w.add_head_count(heads)
        w.add_head_count_kv(kv_heads)
        w.add_layer_norm_rms_eps(config.rms_norm_eps)
        w.add_rope_freq_base(float(rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0)))
        w.add_rope_dimension_count(head_dim)
        if head_dim != config.hidden_size // heads:  # llama.cpp assumes hidden / heads unless told
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_vocab_size(n_vocab)
        w.add_file_type(file_type)
        if quant_type is not None:
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tokens, types = token_table(tokenizer, n_vocab)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        with tempfile.TemporaryDirectory() as saved:  # merges and special ids as gguf reads them from tokenizer files
            tokenizer.save_pretrained(saved)
            special = gguf.SpecialVocab(saved, load_merges=True, n_vocab=n_vocab)
        for kind_, token in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                             ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
            if token is not None:  # the tokenizer as knowtune uses it (its pad may be set at load), over the files'
                special.special_token_ids[kind_] = token
        special.chat_template = tokenizer.chat_template
        special.add_to_gguf(w, quiet=True)

        for name, data in state.items():
            target = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise KnowtuneError(f"GGUF export: no GGUF name for the tensor {name}.", fix="export --format hf.")
            if GGUF_ARCHITECTURES[kind]["rotary_layout"] and name.endswith(("q_proj.weight", "k_proj.weight")):
                data = rotary_layout(data, heads if "q_proj" in name else kv_heads)
            if data.ndim == 1:  # norms and biases stay f32, as llama.cpp keeps them
                w.add_tensor(target, data.astype(np.float32))
                continue
            qtype = quant_type if quant_type is not None and data.shape[-1] % gguf.GGML_QUANT_SIZES[quant_type][0] == 0 \
                else float_type  # a row that does not fill whole quantisation blocks keeps the float type
            if qtype == gguf.GGMLQuantizationType.F32:
                w.add_tensor(target, data.astype(np.float32))
            elif qtype == gguf.GGMLQuantizationType.F16:
                w.add_tensor(target, data.astype(np.float16))
            else:
                w.add_tensor(target, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        try:
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
        finally:
            w.close()
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


CHATML = ("{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
          "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n")


def write_modelfile(gguf_path: Path, tokenizer) -> Path:
    """An Ollama Modelfile beside the GGUF (`ollama create NAME -f FILE`): the file, the chat layout when the
    template is ChatML (as the registry's models use), the system prompt the template adds by default, and the
    end-of-turn token as a stop word."""
    from knowtune.io import write_text

    lines = [f"# Ollama: ollama create {gguf_path.stem} -f {gguf_path.with_suffix('.Modelfile').name}",
             f"FROM ./{gguf_path.name}"]
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}], tokenize=False,
                                             add_generation_prompt=True) if tokenizer.chat_template else ""
    if "<|im_start|>" in rendered:
        lines.append(f'TEMPLATE """{CHATML}"""')
        head = rendered.split("\x00")[0]
        if head.startswith("<|im_start|>system\n"):
            system = head[len("<|im_start|>system\n"):].split("<|im_end|>")[0]
            lines.append(f'SYSTEM """{system}"""')
    if tokenizer.eos_token:
        lines.append(f'PARAMETER stop "{tokenizer.eos_token}"')
    lines.append("PARAMETER temperature 0")
    return write_text(gguf_path.with_suffix(".Modelfile"), "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------------ parity

def parity(a: ExportArgs, audit: dict, log=print) -> dict:
    """Answer the audit's held-out probes and general questions with the exported model, greedy, as the audit
    did; compare accuracy and the share of identical answers."""
    import tempfile

    import yaml

    from knowtune.models.load import load_for_answering
    from knowtune.progress import library_output, phase

    settings = yaml.safe_load((a.run / "config.yaml").read_text())
    after = audit["after"]
    rows = {"held_out": after["probes"], "retention": after.get("retention", [])}
    with tempfile.TemporaryDirectory(dir=a.out.parent, prefix=".parity.") as tmp:
        with phase("Loading the export to check it"), library_output(None, False):
            ref = str(a.out)
            if a.format == "gguf":  # through transformers' GGUF loader, into a folder that goes with the check
                from knowtune.models.fetch import convert_gguf

                ref = str(convert_gguf(a.out, Path(tmp) / "model", log=lambda *_: None))
            model, tokenizer = load_for_answering(ref, log=log)
        return _answers_beside_audit(a, model, tokenizer, rows, settings)


def _answers_beside_audit(a: ExportArgs, model, tokenizer, rows: dict, settings: dict) -> dict:
    from knowtune.data.knowledge import Probe
    from knowtune.eval.audit import accuracy, score_probes
    from knowtune.eval.generate import GenerationSettings
    from knowtune.progress import phase

    gen = GenerationSettings(max_new_tokens=settings.get("max_new_tokens", 40))
    out = {"tolerance": a.tolerance}
    total = sum(len(r) for r in rows.values())
    with phase("Answering the run's audit questions with the export", total) as advance:
        for key, theirs in rows.items():
            if not theirs:
                continue
            ours = score_probes(model, tokenizer, [Probe.from_row(r) for r in theirs], gen, progress=advance)
            out[key] = {"questions": len(theirs), "run": accuracy(theirs), "export": accuracy(ours),
                        "same_answer": sum(o["output"].strip() == t["output"].strip() for o, t in zip(ours, theirs)) / len(theirs)}
    out["passed"] = all(abs(out[k]["export"] - out[k]["run"]) <= a.tolerance + 1e-9 for k in rows if k in out)
    return out
