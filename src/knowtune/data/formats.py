"""Readers for the accepted training-data formats.

Every reader yields `Row`s that keep the 1-based line (JSONL, YAML), line (CSV, header = line 1) or row
number (Parquet) they came from, so every later error can point at it. Rows are then turned into
`Example`s: one question (or prompt) with its answer, in one of two styles:
- "chat": taught and probed through the base model's chat template (chat, instruction, Q&A, packs)
- "plain": taught and probed as plain continuation, no template (prompt/completion data)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowtune.errors import DataError

FORMAT_KEYS = {  # format name -> keys that identify it (all must be present)
    "chat": {"messages"},
    "preference": {"prompt", "chosen", "rejected"},
    "prompt_completion": {"prompt", "completion"},
    "instruction": {"instruction", "output"},
    "qa": {"question", "answer"},
    "pack": {"id", "answer", "questions"},
}
ALLOWED_KEYS = {
    "chat": {"messages", "id", "metadata", "tools", "parallel_tool_calls", "fact_id"},
    "preference": {"prompt", "chosen", "rejected", "id", "metadata"},
    "prompt_completion": {"prompt", "completion", "id", "metadata", "fact_id"},
    "instruction": {"instruction", "input", "output", "id", "metadata", "fact_id", "system"},
    "qa": {"question", "answer", "aliases", "id", "metadata", "fact_id"},
    "pack": {"id", "answer", "questions", "heldout", "statements", "aliases", "topic"},
}
TABULAR = {".csv", ".parquet"}
SUFFIXES = {".jsonl", ".json", ".csv", ".parquet", ".yaml", ".yml"}


@dataclass
class Row:
    file: str
    line: int
    data: Any
    notes: list[str] = field(default_factory=list)  # e.g. "CRLF line ending", "byte-order mark"


@dataclass
class Example:
    """One way of asking for one answer; the unit that knowledge.py groups into facts."""

    style: str  # "chat" | "plain"
    prompt: Any  # list of chat messages (without the final answer) or a plain-text prompt
    answer: str
    source: str  # "file:line"
    aliases: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    fact_id: str | None = None
    pinned_test: bool = False  # marked held-out by the user: never trained on


def detect_format(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    for name, needed in FORMAT_KEYS.items():
        if needed <= keys:
            return name
    return None


def read_rows(path: str | Path) -> tuple[list[Row], list[tuple[int, str]]]:
    """Read a data file into rows. Returns (rows, broken) where broken = [(line, message)] for lines that
    could not be parsed at all. Raises DataError when the file cannot be read."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file.", fix="check the path; `knowtune check` takes JSONL, CSV, Parquet or YAML files.")
    if path.is_dir():
        raise DataError(f"{path} is a folder.", fix="pass the data files inside it (documents folders arrive in a later version).")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{suffix}'.", fix=f"use one of {', '.join(sorted(SUFFIXES))}.")
    if suffix == ".csv":
        return _read_csv(path), []
    if suffix == ".parquet":
        return _read_parquet(path), []
    if suffix in {".yaml", ".yml"}:
        return _read_yaml_pack(path)
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> tuple[list[Row], list[tuple[int, str]]]:
    raw = path.read_bytes()
    rows, broken = [], []
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        bom = True
    else:
        bom = False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [], [(line, f"is not valid UTF-8 text (byte {exc.start}); save the file as UTF-8")]
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    for i, line in enumerate(text.split("\n"), start=1):
        notes = []
        if line.endswith("\r"):
            line = line[:-1]
            notes.append("CRLF line ending (accepted)")
        if i == 1 and bom:
            notes.append("UTF-8 byte-order mark at the start of the file (accepted)")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            broken.append((i, f"is not valid JSON ({exc.msg} at column {exc.colno}); each line must hold one JSON object"))
            continue
        rows.append(Row(str(path), i, obj, notes))
    return rows, broken


def _read_json_array(path: Path, text: str) -> tuple[list[Row], list[tuple[int, str]]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [(exc.lineno, f"is not valid JSON ({exc.msg})")]
    return [Row(str(path), i, obj) for i, obj in enumerate(items, start=1)], []


def _read_csv(path: Path) -> list[Row]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = []
        for rec in reader:
            obj = {k: _maybe_json(v) for k, v in rec.items() if k is not None and v not in (None, "")}
            rows.append(Row(str(path), reader.line_num, obj))
    return rows


def _maybe_json(value: str) -> Any:
    """CSV cells holding lists (messages, aliases) are written as JSON."""
    s = value.strip()
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            pass
    return value


def _read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}).", fix="re-export the file, or use JSONL.") from exc
    return [Row(str(path), i, {k: v for k, v in rec.items() if v is not None})
            for i, rec in enumerate(table.to_pylist(), start=1)]


def _read_yaml_pack(path: Path) -> tuple[list[Row], list[tuple[int, str]]]:
    """A knowledge pack in YAML: {name?, facts: [{id, statements, questions, heldout?, answer, aliases?}]}.
    Line numbers come from the YAML node of each fact."""
    import yaml

    text = path.read_text(encoding="utf-8-sig")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [((mark.line + 1) if mark else 1, f"is not valid YAML ({getattr(exc, 'problem', exc)})")]
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        return [], [(1, "a knowledge pack must be a mapping with a `facts:` list")]
    facts_node = next(v for k, v in root.value if k.value == "facts")
    return [Row(str(path), node.start_mark.line + 1, obj) for node, obj in zip(facts_node.value, data["facts"])], []


def row_to_examples(row: Row, fmt: str) -> list[Example]:
    """Turn one valid row into examples (a pack fact gives one example per phrasing)."""
    d, src = row.data, f"{row.file}:{row.line}"
    fact_id = str(d["fact_id"]) if d.get("fact_id") is not None else None
    if fmt == "chat":
        msgs = [{"role": m["role"], "content": m["content"]} for m in d["messages"]]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return [Example("chat", msgs[:last], msgs[last]["content"], src, fact_id=fact_id)]
    if fmt == "prompt_completion":
        return [Example("plain", d["prompt"], d["completion"], src, fact_id=fact_id)]
    if fmt == "instruction":
        user = d["instruction"] if not d.get("input") else f"{d['instruction']}\n\n{d['input']}"
        msgs = ([{"role": "system", "content": d["system"]}] if d.get("system") else []) + [{"role": "user", "content": user}]
        return [Example("chat", msgs, d["output"], src, fact_id=fact_id)]
    if fmt == "qa":
        return [Example("chat", [{"role": "user", "content": d["question"]}], str(d["answer"]), src,
                        aliases=[str(a) for a in d.get("aliases") or []], fact_id=fact_id)]
    if fmt == "pack":
        aliases = [str(a) for a in d.get("aliases") or []]
        statements = [str(s) for s in d.get("statements") or []]
        out = []
        for held, key in ((False, "questions"), (True, "heldout")):
            for q in d.get(key) or []:
                out.append(Example("chat", [{"role": "user", "content": str(q)}], str(d["answer"]), src,
                                   aliases=aliases, statements=statements, fact_id=str(d["id"]), pinned_test=held))
        return out
    return []  # preference rows are read and checked, but taught by `knowtune dpo`, not `teach`
