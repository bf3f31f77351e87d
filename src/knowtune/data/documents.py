"""Documents: `.txt`, `.md`, `.html` and `.pdf` files, single or in folders, read into chunks that keep
their provenance (file, page, heading path, character offsets).

Offsets point into the file's text as knowtune reads it: the decoded file for .txt and .md, the visible
text of an .html file, and the extracted text of the page for a .pdf. Input files are only read.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path

from knowtune.data.cloze import trim_span, sentences
from knowtune.errors import DataError

DOC_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


@dataclass
class Chunk:
    text: str
    file: str
    page: int | None  # 1-based, PDFs only
    heading: str  # "Page title > Section > Subsection", "" when none
    start: int
    end: int

    @property
    def source(self) -> str:
        page = f" p.{self.page}" if self.page else ""
        heading = f" [{self.heading}]" if self.heading else ""
        return f"{self.file}{page}{heading} chars {self.start}-{self.end}"

    def to_row(self) -> dict:
        return asdict(self)


def is_document(path: str | Path) -> bool:
    """A folder or a file with a document suffix (data files such as JSONL are not documents)."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in DOC_SUFFIXES


def find_documents(paths: list[str | Path]) -> list[Path]:
    """Document files named directly or found (recursively, sorted) in the folders given."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: no such file or folder.", fix="check the path.")
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not inside:
                raise DataError(f"{path}: the folder holds no documents.",
                                fix=f"put {', '.join(sorted(DOC_SUFFIXES))} files in it, or pass the files themselves.")
            found += inside
        elif path.suffix.lower() in DOC_SUFFIXES:
            found.append(path)
        else:
            raise DataError(f"{path}: '{path.suffix}' is not a document type.",
                            fix=f"documents are {', '.join(sorted(DOC_SUFFIXES))} files.")
    return found


@dataclass
class Section:
    text: str  # the section's text as read (Markdown still marked up; see `visible`)
    page: int | None
    heading: str
    offset: int  # where the section's text starts in the file's (or page's) text
    markdown: bool = False

    def visible(self, a: int, b: int) -> str:
        return _md_inline(self.text[a:b]) if self.markdown else self.text[a:b]


def read_document(path: Path) -> list[Section]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _read_pdf(path)
    text = _read_text(path)
    if suffix in (".md", ".markdown"):
        return _markdown_sections(text)
    if suffix in (".html", ".htm"):
        return _html_sections(text)
    return [Section(text, None, "", 0)]


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    sample = raw[:4096]
    if b"\x00" in sample or (sample and sum(b < 9 or 13 < b < 32 for b in sample) / len(sample) > 0.05):
        raise DataError(f"{path}: looks like binary data, not text (control bytes near the start).",
                        fix=f"convert it to plain UTF-8 text, or remove it from the documents.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 text (byte {exc.start}).",
                        fix="save the file as UTF-8.") from exc


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def _markdown_sections(text: str) -> list[Section]:
    """One section per heading; the heading path joins the enclosing headings."""
    sections, path = [], []
    marks = list(_MD_HEADING.finditer(text))
    bounds = [(0, marks[0].start() if marks else len(text), None)]
    bounds += [(m.end(), marks[i + 1].start() if i + 1 < len(marks) else len(text), m) for i, m in enumerate(marks)]
    for start, end, m in bounds:
        if m is not None:
            level = len(m.group(1))
            path = path[: level - 1] + [_md_inline(m.group(2)).strip()]
        if _md_inline(text[start:end]).strip():
            sections.append(Section(text[start:end], None, " > ".join(path), start, markdown=True))
    return sections


def _md_inline(text: str) -> str:
    """Markdown to visible text: links and images keep their text, emphasis and code marks go."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    text = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", text, flags=re.M)  # list markers
    text = re.sub(r"^\s*>\s?", "", text, flags=re.M)
    return text


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "head"}
    BLOCK = {"p", "div", "li", "br", "tr", "section", "article", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, list[str]]] = [("", [])]
        self.path: list[str] = []
        self.skipping = 0
        self.heading: tuple[int, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.heading = (int(tag[1]), [])
        elif tag in self.BLOCK:
            self.sections[-1][1].append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading:
            level, words = self.heading
            self.path = self.path[: level - 1] + [" ".join("".join(words).split())]
            self.sections.append((" > ".join(self.path), []))
            self.heading = None
        elif tag in self.BLOCK:
            self.sections[-1][1].append("\n")

    def handle_data(self, data):
        if self.skipping:
            return
        if self.heading is not None:
            self.heading[1].append(data)
        else:
            self.sections[-1][1].append(data)


def _html_sections(text: str) -> list[Section]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    out, offset = [], 0
    for heading, parts in parser.sections:
        body = re.sub(r"[ \t]+", " ", "".join(parts))
        body = re.sub(r"\n\s*\n\s*", "\n\n", body).strip()
        if body:
            out.append(Section(body, None, heading, offset))
            offset += len(body) + 2
    return out


def _read_pdf(path: Path) -> list[Section]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency
        raise DataError(f"{path}: reading PDFs needs the pypdf package.", fix="pip install pypdf") from exc
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DataError(f"{path}: the PDF is encrypted with a password.",
                            fix="save an unencrypted copy (or export its text to .txt) and pass that instead.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DataError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc}).",
                        fix="re-export the PDF, or save its text as .txt and pass that instead.") from exc
    except Exception as exc:  # pypdf raises assorted errors on damaged files
        if "encrypt" in str(exc).lower() or "crypt" in type(exc).__name__.lower():
            raise DataError(f"{path}: the PDF is encrypted and cannot be opened ({exc}).",
                            fix="save an unencrypted copy and pass that instead.") from exc
        raise DataError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc}).",
                        fix="re-export the PDF, or save its text as .txt and pass that instead.") from exc
    sections = [Section(t, i, "", 0) for i, t in enumerate(pages, start=1) if t.strip()]
    if not sections:
        raise DataError(f"{path}: the PDF has no extractable text (a scanned image?).",
                        fix="run OCR on it first, or pass its text as a .txt file.")
    return sections


def chunk_documents(paths: list[str | Path], max_chars: int = 1200) -> list[Chunk]:
    """Read every document and cut it into chunks of whole paragraphs (whole sentences for long ones) of
    at most max_chars, never across a heading or a page."""
    chunks: list[Chunk] = []
    for path in find_documents(paths):
        n_before = len(chunks)
        for sec in read_document(path):
            pieces = []
            for a, b in _paragraphs(sec.text):
                pieces += [(a + x, a + y) for x, y in sentences(sec.text[a:b])] if b - a > max_chars else [(a, b)]
            groups: list[list[int]] = []
            for a, b in pieces:
                if groups and b - groups[-1][0] <= max_chars:
                    groups[-1][1] = b
                else:
                    groups.append([a, b])
            for a, b in groups:
                text = sec.visible(a, b).strip()
                if text:
                    chunks.append(Chunk(text, str(path), sec.page, sec.heading, sec.offset + a, sec.offset + b))
        if len(chunks) == n_before:
            raise DataError(f"{path}: the document has no text.", fix="remove it, or fill it.")
    return chunks


def _paragraphs(text: str) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in re.finditer(r"\n\s*\n", text):
        if text[start:m.start()].strip():
            out.append(trim_span(text, start, m.start()))
        start = m.end()
    if text[start:].strip():
        out.append(trim_span(text, start, len(text)))
    return out
