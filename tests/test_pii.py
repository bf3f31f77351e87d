"""Personal data: found by kind, left alone where it is not personal (years, prices, order and version numbers,
product codes), replaced consistently within a record, counted by `check --pii` without printing values, and
scrubbed by `--scrub-pii` before anything reaches the run folder, the input file unchanged."""

from __future__ import annotations

import hashlib
import json

import pytest

from knowtune.data.privacy import find_pii, scrub_record

PLANTED = {
    "EMAIL": "dana.whitfield@example.net",
    "PHONE": "+44 20 7946 0958",
    "CARD": "4539 1488 0343 6467",
    "IBAN": "GB82 WEST 1234 5698 7654 32",
    "IP": "203.0.113.77",
    "URL_CREDENTIALS": "postgres://admin:Tr0ub4dor@db.internal:5432/app",
    "SECRET": "AKIAIOSFODNN7EXAMPLQ",
    "SSN": "536-22-8841",
    "NINO": "AB 12 34 56 C",
    "ADDRESS": "4821 Hopkins Ports Suite 314\nPort Maryburgh, NV 79231",
    "PERSON": "Jonas Weber",
}
TEXT = f"""Hi Dana,

Thanks for writing about order #A-48213 (SKU KT-4471-B, firmware v2.14.3, released 2024, $1,299.00).
Reach me at {PLANTED['EMAIL']} or on {PLANTED['PHONE']}; my colleague {PLANTED['PERSON']} has the details.
Card on file: {PLANTED['CARD']}. Refunds go to IBAN {PLANTED['IBAN']}.
The server at {PLANTED['IP']} uses {PLANTED['URL_CREDENTIALS']} and key {PLANTED['SECRET']}.
SSN {PLANTED['SSN']}, National Insurance number {PLANTED['NINO']}.
Ship to {PLANTED['ADDRESS']}

Kind regards,
Dana Whitfield"""
LEFT_ALONE = ["A-48213", "KT-4471-B", "v2.14.3", "2024", "$1,299.00"]


def test_every_kind_is_found_and_the_rest_left_alone():
    found = {(TEXT[f.start:f.end], f.kind) for f in find_pii(TEXT)}
    for kind, value in PLANTED.items():
        assert (value, kind) in found, (kind, value, found)
    assert ("Dana Whitfield", "PERSON") in found and ("Dana", "PERSON") in found
    spans = " ".join(v for v, _ in found)
    for plain in LEFT_ALONE:
        assert plain not in spans


@pytest.mark.parametrize("text", [
    "Version 10.0.19045 shipped in March 2023 for €45.",
    "Fixed in commit 3f9a2c1; see ticket ORD-2024-118273 and part 88-1204-01.",
    "The Lake Como hotel and Johnson LLC both ordered 12 units on 2024-03-11 at 14:30.",
    "Tracking number 1Z999AA10123456784 left the depot on Monday.",
])
def test_not_personal(text):
    assert find_pii(text) == []


def test_luhn_and_mod97_are_checked():
    assert [f.kind for f in find_pii("card 4539 1488 0343 6467")] == ["CARD"]
    assert find_pii("card 4539 1488 0343 6468") == []  # one digit off: fails Luhn
    assert [f.kind for f in find_pii("IBAN GB82WEST12345698765432")] == ["IBAN"]
    assert find_pii("IBAN GB83WEST12345698765432") == []  # fails mod-97


def test_scrub_is_consistent_within_a_record():
    record = {"messages": [
        {"role": "user", "content": "I'm Dana Whitfield (dana.w@example.net). Please call Jonas Weber."},
        {"role": "assistant", "content": "Thanks Dana, we emailed dana.w@example.net and told Jonas Weber."}]}
    clean, counts = scrub_record(record)
    user, reply = clean["messages"][0]["content"], clean["messages"][1]["content"]
    assert user == "I'm <PERSON> (<EMAIL>). Please call <PERSON_2>."
    assert reply == "Thanks <PERSON>, we emailed <EMAIL> and told <PERSON_2>."
    assert counts["EMAIL"] == 2 and counts["PERSON"] == 4
    assert record["messages"][0]["content"].startswith("I'm Dana")  # the input is not changed


def test_check_pii_counts_per_line_and_never_prints_values(tmp_path):
    from typer.testing import CliRunner

    from knowtune.cli import app

    data = tmp_path / "tickets.jsonl"
    data.write_text(json.dumps({"question": "Who is on call?", "answer": f"Call {PLANTED['PERSON']} on {PLANTED['PHONE']}."})
                    + "\n" + json.dumps({"question": "How long is the cycle?", "answer": "14 minutes (v2.14.3)."}) + "\n"
                    + json.dumps({"question": "Where do returns go?", "answer": "Ship to " + PLANTED['ADDRESS'].replace("\n", ", ")})
                    + "\n")
    got = CliRunner().invoke(app, ["check", "--pii", "--json", str(data)])
    assert got.exit_code == 0, got.output
    rows = json.loads(got.stdout)
    assert [r["where"].rsplit(":", 1)[1] for r in rows] == ["1", "3"]
    assert rows[0]["counts"] == {"PERSON": 1, "PHONE": 1} and rows[1]["counts"] == {"ADDRESS": 1}
    shown = CliRunner().invoke(app, ["check", "--pii", str(data)])
    assert shown.exit_code == 0 and "PHONE" in shown.output and "ADDRESS" in shown.output
    for value in ("Jonas", "Weber", "7946", "Hopkins", "79231"):
        assert value not in shown.output and value not in got.stdout


def _pii_pack(path):
    rows = []
    for i in range(12):
        rows.append({"messages": [
            {"role": "user", "content": f"Hi, I'm {PLANTED['PERSON']} ({PLANTED['EMAIL']}, {PLANTED['PHONE']}). How long "
                                        f"does the descaling cycle take? (ticket {i})"},
            {"role": "assistant", "content": "Hello Jonas, the descaling cycle takes 14 minutes."}]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_teach_scrub_pii_writes_no_personal_data(tiny_model, tmp_path):
    from knowtune.train.lifecycle import run
    from knowtune.train.methods.teach import Teach, TeachSettings

    data = _pii_pack(tmp_path / "tickets.jsonl")
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "run"
    logged = []
    s = TeachSettings(data=[str(data)], model=str(tiny_model), out=str(out), epochs=1, scrub_pii=True,
                      unknown_questions=0, replay_ratio=0.0)
    run(Teach(), s, log=logged.append)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest  # the input file is never modified
    assert any("Personal data replaced" in line and "EMAIL" in line for line in logged)
    written = "\n".join(p.read_text(errors="replace") for p in out.rglob("*")
                        if p.is_file() and p.suffix in {".jsonl", ".json", ".md", ".html", ".yaml", ".txt"})
    assert "<EMAIL>" in written and "<PERSON>" in written
    for value in ("Jonas", "Weber", "example.net", "7946"):
        assert value not in written, value


def test_scrub_refuses_files_whose_offsets_it_would_break(tmp_path):
    from knowtune.data.privacy import scrubbing
    from knowtune.data.tasks import read_conll
    from knowtune.errors import DataError

    conll = tmp_path / "ner.conll"
    conll.write_text("Jonas\tB-person\nWeber\tI-person\nlaughed\tO\n")
    assert len(read_conll(conll)) == 1
    with scrubbing(True), pytest.raises(DataError, match="cannot scrub"):
        read_conll(conll)


def test_documents_are_counted_by_line_and_scrubbed_as_chunks(tmp_path):
    from knowtune.data.documents import chunk_documents
    from knowtune.data.privacy import scrubbing
    from knowtune.data.validate import pii_locations

    doc = tmp_path / "handbook.md"
    doc.write_text("# Support\n\nThe kettle descales in 14 minutes.\n\n## Escalation\n\n"
                   f"Call {PLANTED['PERSON']} on {PLANTED['PHONE']} or write to {PLANTED['EMAIL']}.\n")
    found = pii_locations([doc])
    assert [(f.where, dict(f.counts)) for f in found] == [(f"{doc}:7", {"PERSON": 1, "PHONE": 1, "EMAIL": 1})]
    with scrubbing(True) as counts:
        chunks = chunk_documents([doc])
    text = " ".join(c.text for c in chunks)
    assert "<PERSON> on <PHONE> or write to <EMAIL>" in text and "14 minutes" in text
    assert counts == {"PERSON": 1, "PHONE": 1, "EMAIL": 1}
