"""Readers for the task formats people have (issue 19): labelled text, CoNLL token tags, parallel text,
source/target pairs and SQuAD. Each reads every problem it finds with its file and line and raises one
DataError listing them, so a user fixes a file in one pass; input files are only read.

- labelled text: JSONL / JSON / CSV / Parquet rows with `text` and `label`, or plain-text files (or a folder
  of them) with one example per line, the label being the part of the file name that differs
  (`rt-polarity.pos`, `rt-polarity.neg` -> pos, neg; `positive.txt`, `negative.txt` -> positive, negative);
- CoNLL: `token<TAB>tag` per line (the tag is the last column), a blank line between sentences, BIO tags;
- parallel text: two aligned files, plain or gzip, line i of one translating line i of the other;
- pairs: JSONL rows with `source` and `target` (each a string, or a list: source sentences are joined,
  targets are alternative references);
- SQuAD JSON, v1.1 and v2.0 (unanswerable questions), every answer span checked against its context.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from knowtune.data.formats import SUFFIXES, refuse_long_lines, not_utf8, read_rows
from knowtune.data.privacy import refuse_scrubbing, scrub_if_on
from knowtune.errors import DataError

TAG = re.compile(r"^(O|[BI]-\S+)$")
MAX_TEXT_BYTES = 1 << 30  # 1 GiB of text in one task file (uncompressed)


@dataclass
class Labelled:
    text: str
    label: str
    source: str  # "file:line"


@dataclass
class Tagged:
    tokens: list[str]
    tags: list[str]
    source: str  # "file:line" of the sentence's first token


@dataclass
class Pair:
    source: str
    targets: list[str]  # one or more references
    where: str  # "file:line"


@dataclass
class QA:
    id: str
    title: str
    question: str
    context: str
    answers: list[str] = field(default_factory=list)  # empty: unanswerable (SQuAD 2.0)
    starts: list[int] = field(default_factory=list)


def _fail(problems: list[str], what: str, fix: str) -> None:
    if problems:
        raise DataError.listing(what, problems, fix=fix)


def text_lines(path: Path) -> list[str]:
    """The lines of a plain or gzip text file (UTF-8), without their line endings."""
    if not path.is_file():
        raise DataError(f"{path}: no such file.", fix="check the path.")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        with gzip.open(path) as f:  # read no more than the limit: a small .gz can expand to gigabytes
            raw = f.read(MAX_TEXT_BYTES + 1)
    if len(raw) > MAX_TEXT_BYTES:
        raise DataError(f"{path}: more than {MAX_TEXT_BYTES // 2**20:,} MiB of text, more than knowtune reads from one "
                        "task file.", fix="split the file, or give a sample of it.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, message = not_utf8(raw, e)
        raise DataError(f"{path}:{line}: {message}.") from None
    refuse_long_lines(path, text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [l.rstrip("\r") for l in lines]


def label_names(paths: list[Path]) -> list[str]:
    """Each file's label: its name without what all the names share at the start (up to a '.') and at the end
    (from a '.'), so `rt-polarity.pos` / `rt-polarity.neg` give pos / neg and `good.txt` / `bad.txt` good / bad."""
    names = [p.name for p in paths]
    if len(names) < 2:
        return [p.stem for p in paths]
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind(".") + 1]
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1]
    suffix = suffix[suffix.find("."):] if "." in suffix else ""
    return [n[len(prefix): len(n) - len(suffix)] or n for n in names]


def read_labelled(paths: list[str | Path]) -> list[Labelled]:
    """Labelled examples from rows with `text` and `label`, or from one plain-text file per label (or a
    folder of them). At least two labels are needed."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")) if p.is_dir() else [p]
    plain = [f for f in files if f.suffix.lower() not in SUFFIXES]
    out: list[Labelled] = []
    problems: list[str] = []
    for f, label in zip(plain, label_names(plain)):
        for i, line in enumerate(text_lines(f), start=1):
            if line.strip():
                out.append(Labelled(scrub_if_on(line.strip()), label, f"{f}:{i}"))
    for f in (f for f in files if f.suffix.lower() in SUFFIXES):
        rows, broken = read_rows(f)
        problems += [f"{f}:{line}: {msg}" for line, msg in broken]
        for row in rows:
            d = row.data
            text, label = (d.get("text"), d.get("label")) if isinstance(d, dict) else (None, None)
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{f}:{row.line}: no `text` (a non-empty string) in this row")
            elif label is None or isinstance(label, (dict, list)) or not str(label).strip():
                problems.append(f"{f}:{row.line}: no `label` (a string or number) in this row")
            else:
                out.append(Labelled(text.strip(), str(label).strip(), f"{f}:{row.line}"))
    _fail(problems, "labelled data", "give each row a `text` and a `label`, then run again.")
    labels = sorted({x.label for x in out})
    if len(labels) < 2:
        got = f"{len(out)} examples, all labelled {labels[0]!r}" if labels else "no examples"
        raise DataError(f"{', '.join(map(str, paths))}: {got}; a classifier needs at least two labels.",
                        fix="add examples of the other classes (one file per label, or rows with other `label` values).")
    return out


def read_conll(path: str | Path) -> list[Tagged]:
    """Sentences of a CoNLL file: `token<TAB>tag` lines (the tag is the last column), a blank line between
    sentences, tags O / B-TYPE / I-TYPE."""
    path = Path(path)
    refuse_scrubbing(path, "its tags belong to the words a placeholder would replace")
    sentences: list[Tagged] = []
    problems: list[str] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for i, line in enumerate([*text_lines(path), ""], start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(Tagged(tokens, tags, f"{path}:{start}"))
            tokens, tags = [], []
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < 2 or not cols[-1].strip():
            problems.append(f"{path}:{i}: no tag after the token {cols[0].strip()!r}; each line is token<TAB>tag")
            continue
        tag = cols[-1].strip()
        if not TAG.match(tag):
            problems.append(f"{path}:{i}: tag {tag!r} is not O, B-TYPE or I-TYPE")
            continue
        start = start if tokens else i
        tokens.append(cols[0])
        tags.append(tag)
    _fail(problems, f"CoNLL file {path}", "give every token a BIO tag after a tab, then run again.")
    if not sentences:
        raise DataError(f"{path}: no tagged sentences.", fix="write one `token<TAB>tag` per line, a blank line between sentences.")
    return sentences


def read_parallel(source: str | Path, target: str | Path) -> list[Pair]:
    """Aligned pairs from two files (plain or .gz): line i of `source` with line i of `target`."""
    source, target = Path(source), Path(target)
    src, tgt = text_lines(source), text_lines(target)
    if len(src) != len(tgt):
        raise DataError(f"{source} has {len(src):,} lines and {target} has {len(tgt):,}: parallel files must align "
                        f"line by line.", fix="give both files the same number of lines (line i of one translates line i of the other).")
    problems = [f"{source}:{i} / {target}:{i}: one side is empty" for i, (a, b) in enumerate(zip(src, tgt), start=1)
                if bool(a.strip()) != bool(b.strip())]
    _fail(problems, "parallel text", "fill in or remove the half-empty pairs (in both files), then run again.")
    pairs = []
    for i, (a, b) in enumerate(zip(src, tgt), start=1):
        if a.strip():
            a, b = scrub_if_on([a.strip(), b.strip()])  # --scrub-pii: a pair is one record
            pairs.append(Pair(a, [b], f"{source}:{i}"))
    return pairs


def read_pairs(path: str | Path) -> list[Pair]:
    """Rows with `source` and `target` (JSONL, JSON, CSV, Parquet); a list source is joined with spaces, a list
    target is a set of references."""
    path = Path(path)
    rows, broken = read_rows(path)
    problems = [f"{path}:{line}: {msg}" for line, msg in broken]
    out: list[Pair] = []
    for row in rows:
        d = row.data if isinstance(row.data, dict) else {}
        src, tgt = d.get("source"), d.get("target")
        src = " ".join(s.strip() for s in src if isinstance(s, str)) if isinstance(src, list) else src
        tgt = [tgt] if isinstance(tgt, str) else tgt
        if not isinstance(src, str) or not src.strip():
            problems.append(f"{path}:{row.line}: no `source` text in this row")
        elif not isinstance(tgt, list) or not [t for t in tgt if isinstance(t, str) and t.strip()]:
            problems.append(f"{path}:{row.line}: no `target` text (a string, or a list of references) in this row")
        else:
            out.append(Pair(src.strip(), [t.strip() for t in tgt if isinstance(t, str) and t.strip()], f"{path}:{row.line}"))
    _fail(problems, f"file {path}", "give each row a `source` and a `target`, then run again.")
    return out


def read_squad(path: str | Path) -> list[QA]:
    """Questions of a SQuAD file (v1.1 or v2.0); every answer must be the context's text at `answer_start`."""
    path = Path(path)
    refuse_scrubbing(path, "its answers are located by character offsets that placeholders would move")
    raw = "\n".join(text_lines(path))
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}).", fix="fix the JSON; SQuAD files are one JSON object.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: not a SQuAD file (no `data` list).", fix='give the SQuAD layout: {"version", "data": [{"title", "paragraphs": [...]}]}.')

    def line_of(qid: str) -> int:
        at = raw.find(json.dumps(qid))
        return raw.count("\n", 0, at) + 1 if at >= 0 else 0

    out: list[QA] = []
    problems: list[str] = []
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            context = para.get("context", "")
            for q in para.get("qas", []):
                qid = str(q.get("id", ""))
                answers = [] if q.get("is_impossible") else q.get("answers", [])
                item = QA(qid, article.get("title", ""), q.get("question", ""), context)
                for a in answers:
                    text, start = a.get("text", ""), a.get("answer_start", -1)
                    if not isinstance(start, int) or context[start: start + len(text)] != text:
                        found = context.find(text) if text else -1
                        hint = f" (the text is at {found})" if found >= 0 else " (the text is not in the context)"
                        problems.append(f"{path}:{line_of(qid)}: question {qid}: answer {text!r} does not match the "
                                        f"context at answer_start {start}{hint}")
                        continue
                    item.answers.append(text)
                    item.starts.append(start)
                if not q.get("question", "").strip():
                    problems.append(f"{path}:{line_of(qid)}: question {qid} has no question text")
                out.append(item)
    _fail(problems, f"SQuAD file {path}", "correct each answer's text or answer_start, then run again.")
    return out
