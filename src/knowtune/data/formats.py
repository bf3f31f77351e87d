"""Readers for the accepted training-data formats.

Every reader yields `Row`s that keep the 1-based line (JSONL, YAML), line (CSV, header = line 1) or row
number (Parquet) they came from, so every later error can point at it. Rows are then turned into
`Example`s: one question (or prompt) with its answer, in one of two styles:
- "chat": taught and probed through the base model's chat template (chat, instruction, Q&A, packs)
- "plain": taught and probed as plain continuation, no template (prompt/completion data)
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Any

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

# Limits on what one data file may hold, far past any real training data, so that a broken or hostile file is
# refused with its line number instead of ending `knowtune check` in a RecursionError (JSON and YAML are read
# recursively: ~1,000 levels of `[` overflow the stack) or in minutes of parsing.
MAX_NESTING = 100  # levels of [ and { (chat rows with tool calls use about 6)
MAX_LINE_CHARS = 1_000_000  # characters on one line (~250,000 tokens, far past any context these models take)
MAX_PACK_VALUES = 1_000_000  # values in a pack once YAML aliases are expanded (a few lines can expand to billions)
MAX_YAML_NUMBER_CHARS = 1_000  # a YAML integer ('1:2:3...' base 60, 0x...) that long takes quadratic time to build


@dataclass
class Row:
    file: str
    line: int
    data: Any
    notes: list[str] = field(default_factory=list)  # e.g. "CRLF line ending", "byte-order mark"


@dataclass
class Example:
    """One way of asking for one answer; the unit that knowledge.py groups into facts."""

    style: Literal["chat", "plain"]
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
    could not be parsed at all. Raises DataError when the file cannot be read. Under `privacy.scrubbing(True)`
    (a run's --scrub-pii) each row's personal data is replaced by placeholders as it is read."""
    from knowtune.data.privacy import scrub_if_on

    rows, broken = _read_any(path)
    for row in rows:
        row.data = scrub_if_on(row.data)
    return rows, broken


def _read_any(path: str | Path) -> tuple[list[Row], list[tuple[int, str]]]:
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


def not_utf8(raw: bytes, exc: UnicodeDecodeError) -> tuple[int, str]:
    """(line, message) for a file that is not UTF-8."""
    return raw[: exc.start].count(b"\n") + 1, f"is not valid UTF-8 text (byte {exc.start}); save the file as UTF-8"


def refuse_long_lines(path: Path, text: str, first_line: int = 1) -> None:
    """DataError at the first line longer than MAX_LINE_CHARS (checked only when the text is that long at all)."""
    if len(text) <= MAX_LINE_CHARS:
        return
    for i, line in enumerate(text.split("\n"), start=first_line):
        if len(line) > MAX_LINE_CHARS:
            raise DataError(f"{path}:{i}: the line is {len(line):,} characters long, more than the "
                            f"{MAX_LINE_CHARS:,} knowtune reads on one line; the file was not read.",
                            fix="split the example or shorten it: no model knowtune trains takes a context that long.")


@functools.cache
def pack_loader():
    """PyYAML's safe loader without YAML 1.1's base-60 numbers: a pack that says `answer: 7:40` means the
    time, not 460 (the plain decimal, octal, hex and float forms are read as before)."""
    import yaml

    class PackLoader(yaml.SafeLoader):
        pass

    numbers = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    PackLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in numbers]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    PackLoader.add_implicit_resolver(numbers[0], re.compile(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
    PackLoader.add_implicit_resolver(numbers[1], re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
    return PackLoader


# A JSON string (closed or not: an unclosed one runs to the end) or a bracket. The string part is the unrolled
# `"(?:[^"\\]|\\.)*"` whose two halves never match the same character, so it cannot backtrack.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


def _refuse_deep_json(path: Path, text: str, first_line: int = 1) -> None:
    """DataError where JSON text first nests deeper than MAX_NESTING, before json.loads recurses into it."""
    if text.count("[") + text.count("{") <= MAX_NESTING:  # the usual case: cannot be that deep
        return
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        depth += (token in ("[", "{")) - (token in ("]", "}"))  # a string token never equals a bracket
        if depth > MAX_NESTING:
            line = first_line + text.count("\n", 0, m.start())
            column = m.start() - text.rfind("\n", 0, m.start())
            raise DataError(f"{path}:{line}: the JSON is nested more than {MAX_NESTING} levels deep (column {column}); "
                            "the file was not read.",
                            fix="flatten that value: training data needs a few levels (messages, tool calls), "
                                "not hundreds.")


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
        return [], [not_utf8(raw, exc)]
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
        refuse_long_lines(path, line, first_line=i)
        _refuse_deep_json(path, line, first_line=i)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            broken.append((i, f"is not valid JSON ({exc.msg} at column {exc.colno}); each line must hold one JSON object"))
            continue
        except ValueError as exc:  # Python refuses integers over 4,300 digits (converting them is quadratic)
            broken.append((i, _number_too_long(exc)))
            continue
        rows.append(Row(str(path), i, obj, notes))
    return rows, broken


def _read_json_array(path: Path, text: str) -> tuple[list[Row], list[tuple[int, str]]]:
    refuse_long_lines(path, text)
    _refuse_deep_json(path, text)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [(exc.lineno, f"is not valid JSON ({exc.msg})")]
    except ValueError as exc:
        return [], [(1, _number_too_long(exc))]
    return [Row(str(path), i, obj) for i, obj in enumerate(items, start=1)], []


def _number_too_long(exc: ValueError) -> str:
    return f"holds a number too long to read ({str(exc).split(';')[0]}); write it as a string"


def _read_csv(path: Path) -> list[Row]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = not_utf8(raw, exc)[0]
        raise DataError(f"{path}:{line}: not valid UTF-8 text (byte {exc.start}).",
                        fix="save the file as UTF-8.") from exc
    refuse_long_lines(path, text)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for rec in reader:
            obj = {k: _maybe_json(v, path, reader.line_num) for k, v in rec.items()
                   if k is not None and v not in (None, "")}
            rows.append(Row(str(path), reader.line_num, obj))
    except csv.Error as exc:  # e.g. a cell over csv's 131,072-character limit
        raise DataError(f"{path}:{reader.line_num + 1}: not readable as CSV ({exc}).",
                        fix="shorten that cell, or give the data as JSONL.") from exc
    return rows


def _maybe_json(value: str, path: Path, line: int) -> Any:
    """CSV cells holding lists (messages, aliases) are written as JSON."""
    s = value.strip()
    if s[:1] in "[{":
        _refuse_deep_json(path, s, first_line=line)
        try:
            return json.loads(s)
        except ValueError:  # not JSON (or a number too long to read): the cell stays text
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

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [not_utf8(raw, exc)]
    refuse_long_lines(path, text)
    _refuse_deep_yaml(path, text)
    loader = pack_loader()(text)
    try:
        root = loader.get_single_node()  # parsed once; the node keeps each fact's line
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [((mark.line + 1) if mark else 1, f"is not valid YAML ({getattr(exc, 'problem', exc)})")]
    except (ValueError, OverflowError) as exc:  # parsed, but not buildable: a date like 2001-13-45
        return [], [(_unbuildable_line(root), f"holds a value YAML cannot build ({exc}); put it in quotes")]
    finally:
        loader.dispose()
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        return [], [(1, "a knowledge pack must be a mapping with a `facts:` list")]
    facts_node = next(v for k, v in root.value if k.value == "facts")
    rows = [Row(str(path), node.start_mark.line + 1, obj) for node, obj in zip(facts_node.value, data["facts"])]
    _refuse_alias_bomb(path, rows)
    return rows, []


def _refuse_deep_yaml(path: Path, text: str) -> None:
    """DataError where YAML first nests deeper than MAX_NESTING, found from the tokens (the scanner keeps a
    count, not a stack) before the recursive composer overflows the stack on it; and at an integer longer than
    MAX_YAML_NUMBER_CHARS, before PyYAML builds it."""
    import yaml

    opens = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
             yaml.BlockMappingStartToken)
    closes = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            depth += isinstance(token, opens) - isinstance(token, closes)
            if depth > MAX_NESTING:
                raise DataError(f"{path}:{token.start_mark.line + 1}: the YAML is nested more than {MAX_NESTING} "
                                "levels deep; the file was not read.",
                                fix="flatten it: a knowledge pack is a list of facts, each a few lists of strings.")
            if isinstance(token, yaml.ScalarToken) and _long_yaml_integer(token):
                raise DataError(f"{path}:{token.start_mark.line + 1}: a number {len(token.value):,} characters long; "
                                "the file was not read.", fix="put it in quotes, to read it as text.")
    except yaml.YAMLError:
        return  # malformed before it got that deep: the parse reports it, at the line it reports it


def _long_yaml_integer(token) -> bool:
    import yaml

    return (token.plain and len(token.value) > MAX_YAML_NUMBER_CHARS
            and pack_loader()("").resolve(yaml.ScalarNode, token.value, (True, False)) == "tag:yaml.org,2002:int")


def _unbuildable_line(root) -> int:
    """The line of the first scalar PyYAML parses but cannot build (1 when none is found)."""
    import yaml

    builder, todo, seen = pack_loader()(""), [root], set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                builder.construct_object(node)
            except (ValueError, OverflowError, yaml.YAMLError):
                return node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            todo += reversed(node.value)
        elif isinstance(node, yaml.MappingNode):
            todo += reversed([n for pair in node.value for n in pair])
    return 1


def _refuse_alias_bomb(path: Path, rows: list[Row]) -> None:
    """DataError at the fact where the pack passes MAX_PACK_VALUES values with YAML aliases expanded: a few
    lines of `&a [*b, *b, ...]` expand to billions (and `&a [*a]` never ends) once checked or printed."""
    budget = MAX_PACK_VALUES
    for row in rows:
        todo = [row.data]
        while todo:
            value = todo.pop()
            budget -= 1
            if budget < 0:
                raise DataError(f"{path}:{row.line}: the pack holds more than {MAX_PACK_VALUES:,} values once its "
                                "YAML aliases (*name) are expanded; the file was not read.",
                                fix="write the values out instead of repeating them through aliases.")
            if isinstance(value, dict):
                todo += [*value.keys(), *value.values()]
            elif isinstance(value, list):
                todo += value


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
