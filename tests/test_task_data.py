"""The task readers (issue 19): what each format gives, and bad input named by file and line."""

from __future__ import annotations

import gzip
import json

import pytest

from knowtune.data.tasks import label_names, read_conll, read_labelled, read_pairs, read_parallel, read_squad
from knowtune.errors import DataError


def test_one_file_per_label_takes_the_differing_part_of_the_names(tmp_path):
    (tmp_path / "rt-polarity.pos").write_text("a fine film .\n\nwarm and witty .\n")
    (tmp_path / "rt-polarity.neg").write_text("simplistic , silly and tedious .\n")
    rows = read_labelled([tmp_path])
    assert sorted((r.label, r.text) for r in rows) == [("neg", "simplistic , silly and tedious ."),
                                                       ("pos", "a fine film ."), ("pos", "warm and witty .")]
    assert rows[-1].source.endswith("rt-polarity.pos:3")  # the blank line 2 is skipped, lines keep their numbers
    assert label_names([tmp_path / "good.txt", tmp_path / "bad.txt"]) == ["good", "bad"]


def test_labelled_rows_name_the_line_without_a_label_and_refuse_one_class(tmp_path):
    f = tmp_path / "reviews.jsonl"
    f.write_text(json.dumps({"text": "great", "label": "pos"}) + "\n" + json.dumps({"text": "awful"}) + "\n")
    with pytest.raises(DataError, match=r"reviews.jsonl:2: no `label`"):
        read_labelled([f])
    f.write_text("".join(json.dumps({"text": f"t{i}", "label": 1}) + "\n" for i in range(3)))
    with pytest.raises(DataError, match=r"3 examples, all labelled '1'; a classifier needs at least two labels"):
        read_labelled([f])


def test_conll_sentences_and_a_line_without_a_tag(tmp_path):
    f = tmp_path / "train.conll"
    f.write_text("@paulwalk\tO\nIt\tO\n's\tO\n\nParis\tB-location\nrocks\tO\n")
    sents = read_conll(f)
    assert [s.tokens for s in sents] == [["@paulwalk", "It", "'s"], ["Paris", "rocks"]]
    assert sents[1].tags == ["B-location", "O"] and sents[1].source.endswith("train.conll:5")
    f.write_text("Paris\tB-location\nrocks\n\nhi\tX-thing\n")
    with pytest.raises(DataError) as e:
        read_conll(f)
    assert "train.conll:2: no tag after the token 'rocks'" in str(e.value)
    assert "train.conll:4: tag 'X-thing' is not O, B-TYPE or I-TYPE" in str(e.value)


def test_parallel_files_must_align(tmp_path):
    en, de = tmp_path / "train.en.gz", tmp_path / "train.de"
    en.write_bytes(gzip.compress(b"A dog runs .\nTwo men talk .\n"))
    de.write_text("Ein Hund rennt .\nZwei Maenner reden .\n")
    pairs = read_parallel(en, de)
    assert [(p.source, p.targets) for p in pairs] == [("A dog runs .", ["Ein Hund rennt ."]),
                                                      ("Two men talk .", ["Zwei Maenner reden ."])]
    de.write_text("Ein Hund rennt .\n")
    with pytest.raises(DataError, match=r"train.en.gz has 2 lines and .*train.de has 1"):
        read_parallel(en, de)


def test_source_target_rows_join_sentences_and_keep_references(tmp_path):
    f = tmp_path / "tldr.jsonl"
    f.write_text(json.dumps({"source": ["We study X.", "It works."], "target": ["X works.", "X is good."]}) + "\n"
                 + json.dumps({"source": "Only source."}) + "\n")
    with pytest.raises(DataError, match=r"tldr.jsonl:2: no `target`"):
        read_pairs(f)
    f.write_text(json.dumps({"source": ["We study X.", "It works."], "target": ["X works.", "X is good."]}) + "\n")
    (p,) = read_pairs(f)
    assert p.source == "We study X. It works." and p.targets == ["X works.", "X is good."]


def squad(answer_start: int) -> dict:
    context = "The Normans were in Normandy in the 10th century."
    return {"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [{"context": context, "qas": [
        {"question": "Where were the Normans?", "id": "q1", "answers": [{"text": "Normandy", "answer_start": answer_start}],
         "is_impossible": False},
        {"question": "Who ate the Normans?", "id": "q2", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Normans", "answer_start": 4}]}]}]}]}


def test_squad_answers_and_unanswerables(tmp_path):
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(squad(20), indent=1))
    q1, q2 = read_squad(f)
    assert (q1.answers, q1.starts, q2.answers) == (["Normandy"], [20], [])
    f.write_text(json.dumps(squad(3), indent=1))
    line = next(i for i, l in enumerate(f.read_text().splitlines(), start=1) if '"q1"' in l)
    with pytest.raises(DataError, match=rf"dev.json:{line}: question q1: answer 'Normandy' does not match the context "
                                        r"at answer_start 3 \(the text is at 20\)"):
        read_squad(f)
