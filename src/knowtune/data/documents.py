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
from knowtune.data.formats import not_utf8
from knowtune.data.privacy import scrub_if_on
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
        return md_inline(self.text[a:b]) if self.markdown else self.text[a:b]


# Why a bound at all: every reader below is linear, but a 5 GB log dropped into a documents folder would still
# take hours to turn into facts. 5 million characters is ~2,000 pages of prose and reads (facts included) in
# ~15 s here; one document bigger than that is more likely a dump than a handbook.
MAX_DOCUMENT_CHARS = 5_000_000


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


def _too_long(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}, more than the {MAX_DOCUMENT_CHARS:,} characters knowtune reads from one "
                     "document; it was not read.",
                     fix="split it into smaller files (by chapter or section) and pass those, or their folder.")


def _read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > 4 * MAX_DOCUMENT_CHARS:  # refused unread: UTF-8 takes at most 4 bytes a character
        raise _too_long(path, f"the file is {size:,} bytes")
    raw = path.read_bytes()
    sample = raw[:4096]
    if b"\x00" in sample or (sample and sum(b < 9 or 13 < b < 32 for b in sample) / len(sample) > 0.05):
        raise DataError(f"{path}: looks like binary data, not text (control bytes near the start).",
                        fix=f"convert it to plain UTF-8 text, or remove it from the documents.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = not_utf8(raw, exc)[0]
        raise DataError(f"{path}:{line}: not valid UTF-8 text (byte {exc.start}).",
                        fix="save the file as UTF-8.") from exc
    if len(text) > MAX_DOCUMENT_CHARS:
        raise _too_long(path, f"the file holds {len(text):,} characters")
    return text


def _markdown_sections(text: str) -> list[Section]:
    """One section per heading; the heading path joins the enclosing headings."""
    sections, path = [], []
    marks = _md_headings(text)
    bounds = [(0, marks[0][0] if marks else len(text), None)]
    bounds += [(end, marks[i + 1][0] if i + 1 < len(marks) else len(text), (level, title))
               for i, (_, end, level, title) in enumerate(marks)]
    for start, end, heading in bounds:
        if heading is not None:
            level, title = heading
            path = path[: level - 1] + [md_inline(title).strip()]
        if md_inline(text[start:end]).strip():
            sections.append(Section(text[start:end], None, " > ".join(p for p in path if p), start, markdown=True))
    return sections


def _md_headings(text: str) -> list[tuple[int, int, int, str]]:
    r"""(start, end, level, title) of every ATX heading line ('## Title'), found line by line.

    Plain string code, not a regex: `^(#{1,6})\s+(.+?)\s*#*\s*$` backtracks through three overlapping runs of
    whitespace (cubic: a 3.2 KB heading line of spaces, `#`s and spaces took 1.8 s; 13 KB would take 2 minutes),
    and its `\s+` let a line of bare `#`s swallow the next line as its title."""
    found, start = [], 0
    for line in text.split("\n"):
        heading = _md_heading(line)
        if heading:
            found.append((start, start + len(line), *heading))
        start += len(line) + 1
    return found


def _md_heading(line: str) -> tuple[int, str] | None:
    """(level, title) of a heading line, None for any other line. Closing `#`s go ('## Title ##' -> 'Title');
    a line of `#`s alone is an empty heading."""
    level = len(line) - len(line.lstrip("#"))
    rest = line[level:]
    if not 1 <= level <= 6 or (rest and not rest[0].isspace()):
        return None
    title = rest.strip()
    return level, title.rstrip("#").rstrip() or title[:1]  # '# ##': the title is '#', as the old regex read it


# Each pattern's first group is the mark to drop; the other branches step over whitespace that starts no mark,
# a whole run at a time. With the first group alone, `^\s*` rescanned a run of blank lines from every line
# start in it (quadratic: 50 KB of newlines took 22 s).
LIST_MARK = re.compile(r"(^\s*(?:[-*+]|\d+\.)\s+)|^\s+|[^\S\n]+", re.M)
QUOTE_MARK = re.compile(r"(^\s*>\s?)|^\s+|[^\S\n]+", re.M)


def md_inline(text: str) -> str:
    """Markdown to visible text: links and images keep their text, emphasis and code marks go."""
    text = unwrap_links(text, "![", min_label=0)
    text = unwrap_links(text, "[", min_label=1)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    text = LIST_MARK.sub(kept_unless_mark, text)
    text = QUOTE_MARK.sub(kept_unless_mark, text)
    return text


def kept_unless_mark(m: re.Match) -> str:
    return "" if m.group(1) else m.group()


def unwrap_links(text: str, opener: str, min_label: int) -> str:
    r"""`[label](target)` -> `label` (`![alt](target)` -> `alt` with opener '!['), exactly as
    re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text) does (`[^\]]*` for images), in one pass.

    The regex is quadratic on a run of `[` with no `](` after it: every `[` rescans the run for its `]`
    (50,000 took 10 s). Here the next `]` and `)` are looked up once and reused by every `[` before them."""
    out, done, close, paren = [], 0, -1, -1
    i = text.find(opener)
    while i != -1:
        label = i + len(opener)
        close = _next_index(text, "]", label, close)
        if close - label >= min_label and text.startswith("(", close + 1):
            paren = _next_index(text, ")", close + 2, paren)
            if paren < len(text):
                out += [text[done:i], text[label:close]]
                done = paren + 1
                i = text.find(opener, done)
                continue
        i = text.find(opener, i + 1)
    return "".join(out) + text[done:]


def _next_index(text: str, char: str, start: int, known: int) -> int:
    """Where char first occurs at or after start (len(text) when it does not). known is the answer to an
    earlier lookup from a start no later than this one: it still holds while it is not behind start."""
    if known >= start:
        return known
    found = text.find(char, start)
    return len(text) if found == -1 else found


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
    if len(parser.rawdata) > 1 and parser.rawdata.startswith("<"):
        # What feed() left is a tag, comment or declaration that is never closed: it runs to the end of the file.
        # Python 3.11's close() re-reads the rest of the file from every `<` in it (quadratic: 50 KB of `<a `
        # took 13 s); HTML5, and later Pythons, ignore such a tag, so it goes here unread.
        parser.rawdata = ""
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
        pages = _pdf_pages_text(path, reader)
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


def _pdf_pages_text(path: Path, reader) -> list[str]:
    """The text of every page, refused once the pages together pass MAX_DOCUMENT_CHARS (a PDF's text is not
    bounded by its size in bytes: a small file can repeat one content stream on thousands of pages)."""
    pages, total = [], 0
    for number, page in enumerate(reader.pages, start=1):
        pages.append(page.extract_text() or "")
        total += len(pages[-1])
        if total > MAX_DOCUMENT_CHARS:
            raise _too_long(path, f"the text of its first {number} pages (of {len(reader.pages)}) is "
                                  f"{total:,} characters")
    return pages


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
                    text, heading = scrub_if_on([text, sec.heading])  # --scrub-pii: each chunk is a record
                    chunks.append(Chunk(text, str(path), sec.page, heading, sec.offset + a, sec.offset + b))
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
