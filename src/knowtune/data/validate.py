"""`knowtune check`: find every problem in a data file, each with its 1-based line number.

Covers at least what OpenAI's fine-tuning data checks catch: malformed JSON, wrong data types, missing
`messages`, messages missing `role` or `content`, unrecognised keys and roles, empty content, no assistant
message, over-long examples, too few examples; plus empty files, BOM / CRLF (accepted, noted) and exact
duplicates.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from knowtune.data.formats import (ALLOWED_KEYS, FORMAT_KEYS, SUFFIXES, Example, Row, detect_format, read_rows,
                                   row_to_examples)
from knowtune.errors import DataError

ROLES = {"system", "user", "assistant", "tool"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id"}
MIN_EXAMPLES = 10


@dataclass
class Problem:
    file: str
    line: int | None  # None: about the whole file
    level: str  # "error" | "warning" | "note"
    code: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.level}: {self.message} [{self.code}]"


@dataclass
class FileReport:
    file: str
    format: str | None
    rows: int
    problems: list[Problem]
    examples: list[Example]
    token_lengths: list[int]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    def stats(self) -> dict:
        lengths = sorted(self.token_lengths)
        s = {"file": self.file, "format": self.format, "rows": self.rows, "examples": len(self.examples),
             "errors": len(self.errors), "warnings": sum(p.level == "warning" for p in self.problems)}
        if lengths:
            s["tokens"] = {"min": lengths[0], "median": int(statistics.median(lengths)),
                           "p95": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))],
                           "max": lengths[-1], "total": sum(lengths)}
        return s


def check_file(path: str | Path, count_tokens: Callable[[Example], int] | None = None,
               max_length: int = 512, min_examples: int = MIN_EXAMPLES) -> FileReport:
    """Validate one file; never raises on bad content, only on files the reader refuses (unreadable, or past
    its limits on nesting, line length or size: `formats.MAX_NESTING` and the rest), with the line."""
    path = Path(path)
    rows, broken = read_rows(path)
    file = str(path)
    problems = [Problem(file, line, "error", "malformed_json", msg) for line, msg in broken]
    if not rows and not broken:
        problems.append(Problem(file, None, "error", "empty_file",
                                "the file holds no examples; add at least one example per line"))
    for row in rows:
        problems += [Problem(file, row.line, "note", "bom" if "byte-order" in n else "crlf", n) for n in row.notes]
    fmt = _file_format(rows)
    examples: list[Example] = []
    lengths: list[int] = []
    seen: dict[str, int] = {}
    for row in rows:
        row_problems = _check_row(row, fmt)
        problems += row_problems
        if any(p.level == "error" for p in row_problems):
            continue
        key = json.dumps(row.data, sort_keys=True, ensure_ascii=False)
        if key in seen:
            problems.append(Problem(file, row.line, "warning", "duplicate",
                                    f"exact duplicate of line {seen[key]}; it would be trained on twice"))
        else:
            seen[key] = row.line
        row_examples = row_to_examples(row, fmt)
        examples += row_examples
        for ex in row_examples:
            if count_tokens is None:
                continue
            n = count_tokens(ex)
            lengths.append(n)
            if n > max_length:
                problems.append(Problem(file, row.line, "warning", "too_long",
                                        f"example is {n} tokens, longer than the max length {max_length}; it would be "
                                        "truncated: shorten it or raise --max-length"))
    n_rows = len(rows)
    if (rows or broken) and fmt not in (None, "pack", "preference") and n_rows < min_examples:
        problems.append(Problem(file, None, "error", "too_few_examples",
                                f"only {n_rows} examples; at least {min_examples} are needed to fine-tune: add more"))
    problems.sort(key=lambda p: (p.line or 0, p.level != "error"))
    return FileReport(file, fmt, n_rows, problems, examples, lengths)


def _file_format(rows: list[Row]) -> str | None:
    found = Counter(f for f in (detect_format(r.data) for r in rows) if f)
    return found.most_common(1)[0][0] if found else None


def _check_row(row: Row, fmt: str | None) -> list[Problem]:
    p = lambda level, code, msg: Problem(row.file, row.line, level, code, msg)  # noqa: E731
    d = row.data
    if not isinstance(d, dict):
        return [p("error", "wrong_type", f"must be a JSON object, found {type(d).__name__}")]
    if fmt is None:
        keys = " | ".join("+".join(sorted(k)) for k in FORMAT_KEYS.values())
        return [p("error", "unknown_format", f"no known format fits the keys {sorted(d)}; expected one of: {keys}")]
    if fmt == "chat":
        return _check_chat(d, p)
    needed = FORMAT_KEYS[fmt]
    missing = needed - set(d)
    if missing:
        return [p("error", "missing_field", f"missing {', '.join(sorted(missing))} (the file is {fmt} data)")]
    out = [p("warning", "unrecognised_key", f"unrecognised key '{k}' is ignored") for k in sorted(set(d) - ALLOWED_KEYS[fmt])]
    for k in needed - {"questions"}:
        if not isinstance(d[k], (str, int, float)) or isinstance(d[k], bool):
            out.append(p("error", "wrong_type", f"'{k}' must be a string, found {type(d[k]).__name__}"))
        elif not str(d[k]).strip():
            out.append(p("error", "empty_content", f"'{k}' is empty"))
    for k in ("aliases", "questions", "heldout", "statements"):
        v = d.get(k)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, (str, int, float)) for x in v)):
            out.append(p("error", "wrong_type", f"'{k}' must be a list of strings"))
    if fmt == "pack" and not out:
        if not (d.get("questions") or d.get("heldout")):
            out.append(p("error", "empty_content", f"fact '{d['id']}' has no questions"))
        for s in d.get("statements") or []:
            if not _answer_in(str(d["answer"]), [str(a) for a in d.get("aliases") or []], str(s)):
                out.append(p("warning", "statement_without_answer",
                             f"statement of fact '{d['id']}' does not contain its answer: {s!r}"))
    return out


def _check_chat(d: dict, p) -> list[Problem]:
    if "messages" not in d:
        return [p("error", "missing_messages", "missing 'messages' (a chat example is {\"messages\": [...]})")]
    out = [p("warning", "unrecognised_key", f"unrecognised key '{k}' is ignored") for k in sorted(set(d) - ALLOWED_KEYS["chat"])]
    msgs = d["messages"]
    if not isinstance(msgs, list):
        return out + [p("error", "wrong_type", f"'messages' must be a list, found {type(msgs).__name__}")]
    if not msgs:
        return out + [p("error", "empty_content", "'messages' is empty")]
    for i, m in enumerate(msgs, start=1):
        if not isinstance(m, dict):
            out.append(p("error", "wrong_type", f"message {i} must be an object, found {type(m).__name__}"))
            continue
        if "role" not in m:
            out.append(p("error", "message_missing_role", f"message {i} has no 'role'"))
        elif m["role"] not in ROLES:
            out.append(p("error", "unrecognised_role", f"message {i} has unrecognised role {m['role']!r}; use one of {sorted(ROLES)}"))
        if "content" not in m:
            out.append(p("error", "message_missing_content", f"message {i} has no 'content'"))
        elif not isinstance(m["content"], str):
            out.append(p("error", "wrong_type", f"message {i} 'content' must be a string, found {type(m['content']).__name__}"))
        elif not m["content"].strip():
            out.append(p("error", "empty_content", f"message {i} has empty content"))
        for k in sorted(set(m) - MESSAGE_KEYS):
            out.append(p("error", "unrecognised_key", f"message {i} has unrecognised key '{k}'"))
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in msgs):
        out.append(p("error", "no_assistant", "no assistant message: nothing to learn from this example"))
    return out


def _answer_in(answer: str, aliases: list[str], text: str) -> bool:
    from knowtune.text import matches

    return matches(text, answer, aliases)


def load_examples(paths: list[str | Path], **kw) -> tuple[list[Example], list[FileReport]]:
    """Validate every file and return all examples; raises DataError listing every error found."""
    reports = [check_file(p, **kw) for p in paths]
    errors = [e for r in reports for e in r.errors]
    if errors:
        raise DataError.listing("data", [str(e) for e in errors],
                                fix="fix the lines above (`knowtune check FILE` lists every problem), then run again.",
                                problems=[asdict(e) for e in errors])
    examples = [ex for r in reports for ex in r.examples]
    if not examples:
        raise DataError(f"No trainable examples in {', '.join(map(str, paths))}.",
                        fix="add Q&A, chat, prompt/completion or knowledge-pack examples; see `knowtune check --help`.")
    return examples, reports


@dataclass
class Located:
    """Personal data in one record of a file: where (`file:line`, or the page of a PDF) and how many of each kind."""
    file: str
    where: str
    counts: Counter


def pii_locations(paths) -> list[Located]:
    """What `knowtune check --pii` reports: every record of the files that holds personal data, with its line
    (data files: the row's line; documents: the line or page where the chunk starts; plain text: the line).
    The values themselves are never returned."""
    from knowtune.data.documents import chunk_documents, is_document
    from knowtune.data.privacy import count_pii

    out: list[Located] = []
    for path in map(Path, paths):
        if path.suffix.lower() in SUFFIXES:
            rows, _ = read_rows(path)
            out += [Located(str(path), f"{path}:{r.line}", n) for r in rows if (n := count_pii(r.data))]
        elif is_document(path) or path.is_dir():
            texts: dict[str, str] = {}
            for c in chunk_documents([path]):
                if n := count_pii([c.text, c.heading]):
                    if c.page:
                        out.append(Located(c.file, f"{c.file} page {c.page}", n))
                        continue
                    if c.file not in texts:
                        texts[c.file] = Path(c.file).read_text(encoding="utf-8-sig", errors="replace")
                    out.append(Located(c.file, f"{c.file}:{texts[c.file].count(chr(10), 0, c.start) + 1}", n))
        else:  # plain text (a task's lines)
            from knowtune.data.tasks import text_lines

            for i, line in enumerate(text_lines(path), start=1):
                if n := count_pii(line):
                    out.append(Located(str(path), f"{path}:{i}", n))
    return out
