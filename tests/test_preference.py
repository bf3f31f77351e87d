"""Ratings -> preference pairs, KTO labels, corrections and agreement, checked against hand-worked numbers."""

from __future__ import annotations

import pytest

from knowtune.data.preference import (agreement, correction_rows, krippendorff_alpha_nominal, kto_labels, load_pairs,
                                      parse_prompt_lines, preference_pairs, split_pairs)
from knowtune.errors import DataError


def rating(cid, rater, choice, wrong_a=False, wrong_b=False, correction=None, score_a=None, score_b=None):
    return {"comparison_id": cid, "prompt": f"p{cid}", "a": f"a{cid}", "b": f"b{cid}", "rater": rater,
            "choice": choice, "score_a": score_a, "score_b": score_b, "wrong_a": wrong_a, "wrong_b": wrong_b,
            "correction": correction}


def test_krippendorff_alpha_by_hand():
    # coincidences: o_aa = 2 (unit 1), o_ab = o_ba = 1 (unit 2), o_bb = 6 * 1/2 = 3 (unit 3);
    # n_a = 3, n_b = 4, n = 7; alpha = 1 - (n - 1) * 2 / (2 * 3 * 4) = 1 - 12 / 24 = 0.5
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"], ["b", "b", "b"], ["a"]]) == pytest.approx(0.5)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # no variation: not measurable


def test_agreement_pairwise_and_per_rater():
    ratings = [rating(1, "x", "a"), rating(1, "y", "a"), rating(2, "x", "a"), rating(2, "y", "b"),
               rating(3, "x", "b"), rating(3, "y", "b"), rating(3, "z", "b"), rating(4, "z", "tie")]
    a = agreement(ratings)
    assert a["comparisons_rated_twice"] == 3 and a["rater_pairs"] == 5
    assert a["pairwise_agreement"] == pytest.approx(4 / 5)
    assert a["krippendorff_alpha"] == pytest.approx(0.5)
    per = {r["rater"]: r for r in a["per_rater"]}
    assert per["x"]["ratings"] == 3 and per["x"]["agreement"] == pytest.approx(3 / 4)  # with y on 1, 2, 3; with z on 3
    assert per["z"]["agreement"] == pytest.approx(1.0)


def test_pairs_by_majority_and_from_corrections():
    ratings = [rating(1, "x", "a"), rating(1, "y", "a"), rating(1, "z", "b"),  # a wins 2:1
               rating(2, "x", "a"), rating(2, "y", "b"),  # even split: no pair
               rating(3, "x", "tie", wrong_b=True, correction="fixed 3"),  # correction beats the flagged answer
               rating(4, "x", "b", correction="fixed 4")]  # nothing flagged: beats the answer not picked
    pairs = [(p.prompt, p.chosen, p.rejected) for p in preference_pairs(ratings)]
    assert pairs == [("p1", "a1", "b1"), ("p4", "b4", "a4"), ("p3", "fixed 3", "b3"), ("p4", "fixed 4", "a4")]
    assert [r["messages"][1]["content"] for r in correction_rows(ratings)] == ["fixed 3", "fixed 4"]


def test_kto_labels():
    ratings = [rating(1, "x", "a"), rating(1, "y", "a", wrong_a=True), rating(1, "z", "a"),
               rating(2, "x", "tie", score_a=5, score_b=3), rating(3, "x", "tie", correction="better 3")]
    labels = {(r["prompt"], r["completion"]): r["label"] for r in kto_labels(ratings)}
    assert labels[("p1", "a1")] is True  # desirable 2, undesirable 1 (flagged)
    assert labels[("p1", "b1")] is False
    assert labels[("p2", "a2")] is True and ("p2", "b2") not in labels  # a tie scored 3 says nothing
    assert labels[("p3", "better 3")] is True


def test_pairs_files_are_validated_and_split_by_prompt(tmp_path):
    good = tmp_path / "pairs.jsonl"
    good.write_text("".join(f'{{"prompt": "q{i % 5}", "chosen": "c{i}", "rejected": "r{i}"}}\n' for i in range(20)))
    pairs = load_pairs([good])
    assert len(pairs) == 20 and pairs[0].source.endswith("pairs.jsonl:1")
    train, held = split_pairs(pairs, 0.4, seed=0)
    assert len({p.prompt for p in held}) == 2 and not {p.prompt for p in train} & {p.prompt for p in held}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "c", "rejected": "r"}\n{"prompt": "q", "chosen": 3, "rejected": []}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        load_pairs([bad])


def test_prompt_import_names_every_bad_line():
    rows = parse_prompt_lines('{"prompt": "a?"}\n\n{"question": "b?", "answer": 2}\n', "p.jsonl")
    assert rows == [{"prompt": "a?", "reference": None, "answers": []}, {"prompt": "b?", "reference": "2", "answers": []}]
    with pytest.raises(DataError) as exc:
        parse_prompt_lines('{"prompt": "a?"}\nnot json\n{"prompt": ""}\n{"prompt": "c", "answers": [1]}\n', "p.jsonl")
    assert all(f"p.jsonl:{n}" in exc.value.message for n in (2, 3, 4)) and "nothing was imported" in exc.value.fix
