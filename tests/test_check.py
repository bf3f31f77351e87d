"""`knowtune check`: one test per problem type, each asserting the exact line numbers."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowtune.data.validate import check_file
from knowtune.errors import KnowtuneError


def chat(q="What is the capital of France?", a="Paris."):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def write_lines(path, lines, newline="\n", bom=False):
    text = newline.join(line if isinstance(line, str) else json.dumps(line) for line in lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def good(n=12):
    return [chat(f"Question number {i}?", f"Answer {i}.") for i in range(n)]


def lines_of(report, code):
    return [p.line for p in report.problems if p.code == code]


def test_clean_file_has_no_problems(tmp_path):
    r = check_file(write_lines(tmp_path / "ok.jsonl", good()))
    assert r.problems == [] and r.format == "chat" and len(r.examples) == 12


def test_malformed_json(tmp_path):
    lines = good()
    lines[2] = '{"messages": [ broken'
    lines[7] = "not json at all"
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "malformed_json") == [3, 8]
    assert all(p.level == "error" for p in r.problems if p.code == "malformed_json")


def test_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    r = check_file(tmp_path / "e.jsonl")
    assert lines_of(r, "empty_file") == [None] and r.errors


def test_bom_and_crlf_are_accepted_and_noted(tmp_path):
    r = check_file(write_lines(tmp_path / "d.jsonl", good(), newline="\r\n", bom=True))
    assert lines_of(r, "bom") == [1]
    assert lines_of(r, "crlf") == list(range(1, 13))
    assert not r.errors and len(r.examples) == 12


def test_wrong_data_type(tmp_path):
    lines = good()
    lines[1] = [1, 2, 3]
    lines[4] = {"messages": "hello"}
    lines[9] = {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "wrong_type") == [2, 5, 10]


def test_missing_messages(tmp_path):
    lines = good()
    lines[5] = {"conversation": []}
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "missing_messages") == [6]


def test_message_missing_role_or_content(tmp_path):
    lines = good()
    lines[0] = {"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}
    lines[3] = {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "message_missing_role") == [1]
    assert lines_of(r, "message_missing_content") == [4]


def test_unrecognised_keys(tmp_path):
    lines = good()
    lines[2] = {"messages": [{"role": "user", "content": "q", "colour": "red"}, {"role": "assistant", "content": "a"}]}
    lines[6] = {**chat(), "extra": 1}
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "unrecognised_key") == [3, 7]
    assert [p.level for p in r.problems if p.code == "unrecognised_key"] == ["error", "warning"]


def test_unrecognised_role(tmp_path):
    lines = good()
    lines[10] = {"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]}
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "unrecognised_role") == [11]


def test_empty_content(tmp_path):
    lines = good()
    lines[8] = chat("   ", "a")
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "empty_content") == [9]


def test_no_assistant_message(tmp_path):
    lines = good()
    lines[11] = {"messages": [{"role": "user", "content": "q"}]}
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "no_assistant") == [12]


def test_too_long_examples(tmp_path):
    lines = good()
    lines[3] = chat("word " * 200, "a")
    r = check_file(write_lines(tmp_path / "d.jsonl", lines), count_tokens=lambda ex: len(str(ex.prompt)) // 4,
                   max_length=100)
    assert lines_of(r, "too_long") == [4]


def test_too_few_examples(tmp_path):
    r = check_file(write_lines(tmp_path / "d.jsonl", good(9)))
    assert lines_of(r, "too_few_examples") == [None] and r.errors


def test_exact_duplicates(tmp_path):
    lines = good()
    lines[6] = lines[1]
    lines[9] = lines[1]
    r = check_file(write_lines(tmp_path / "d.jsonl", lines))
    assert lines_of(r, "duplicate") == [7, 10]
    assert "line 2" in next(p.message for p in r.problems if p.code == "duplicate")


@pytest.mark.parametrize("row", [
    {"prompt": "The sky is", "completion": " blue."},
    {"instruction": "Name a colour.", "output": "Blue."},
    {"question": "What colour is the sky?", "answer": "blue", "aliases": ["azure"]},
])
def test_other_formats_are_read(tmp_path, row):
    r = check_file(write_lines(tmp_path / "d.jsonl", [row] * 10 + [{**row, "id": 1}]))
    assert not r.errors and len(r.examples) == 11


def test_csv_line_numbers(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("question,answer\n" + "".join(f"Q{i}?,A{i}\n" for i in range(10)) + ",missing\n")
    r = check_file(p)
    assert r.format == "qa" and lines_of(r, "missing_field") == [12]


def test_the_example_pack_is_clean():
    from conftest import EXAMPLE_PACK

    r = check_file(EXAMPLE_PACK)
    assert r.format == "pack" and not r.problems and len({e.fact_id for e in r.examples}) >= 40


def _check_bytes(tmp_path, data: bytes):
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes(data)
    try:
        report = check_file(p)
    except KnowtuneError:
        return None
    for prob in report.problems:
        assert prob.level in {"error", "warning", "note"} and prob.message
    return report


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(tmp_path, data):
    _check_bytes(tmp_path, data)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                               st.sampled_from(["messages", "role", "content", "prompt", "completion", "question",
                                                "answer", "aliases", "instruction", "output", "x"]), kids, max_size=4),
                           max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(json_values, max_size=12))
def test_random_json_never_crash(tmp_path, rows):
    _check_bytes(tmp_path, "\n".join(json.dumps(r) for r in rows).encode())
