"""Task metrics against numbers worked out by hand."""

from __future__ import annotations

import pytest

from knowtune.eval import task_metrics as m


def test_accuracy_and_macro_f1():
    got = m.classification(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    # a: precision 1, recall 1/2 -> F1 2/3; b: precision 2/3, recall 1 -> F1 4/5
    assert got == pytest.approx({"accuracy": 0.75, "macro_f1": (2 / 3 + 4 / 5) / 2})


def test_entity_f1_needs_span_and_type():
    gold = [["B-person", "I-person", "O", "B-location"], ["B-group", "O"]]
    pred = [["B-person", "I-person", "O", "O"], ["B-group", "O"]]
    got = m.entities(gold, pred)
    # 3 gold entities, 2 predicted, both right: precision 1, recall 2/3, F1 0.8
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert got["per_type"]["location"]["f1"] == 0.0 and got["per_type"]["person"]["f1"] == 1.0
    assert m.entities([["B-person", "I-person"]], [["B-person", "B-person"]])["f1"] == 0.0  # wrong span


def test_rouge_takes_the_best_reference():
    got = m.rouge(["the cat sat", "dog"], [["a dog barked", "the cat sat"], ["cat"]])
    assert got["rouge1"] == pytest.approx(0.5) and got["rougeL"] == pytest.approx(0.5)


def test_bleu_and_chrf():
    refs = [["A group of men are loading cotton onto a truck"], ["A man sleeps in a green room on a couch"]]
    same = m.translation([r[0] for r in refs], refs)
    assert same["bleu"] == pytest.approx(100.0) and same["chrf"] == pytest.approx(100.0)
    assert m.translation(["Zebras run", "Nothing here at all"], refs)["bleu"] < 5


def test_squad_exact_match_and_f1():
    got = m.squad(["the Eiffel Tower!", "tower in Paris", "", "x"],
                  [["Eiffel tower"], ["Eiffel Tower", "Paris Tower"], [], []])
    # 1: exact after normalising; 2: best F1 against "Paris Tower": 2 of 3 predicted, 2 of 2 gold -> 0.8;
    # 3: unanswerable, answered empty -> 1; 4: unanswerable, answered -> 0
    assert got["exact"] == pytest.approx(50.0) and got["f1"] == pytest.approx((1 + 0.8 + 1 + 0) / 4 * 100)
    assert got["has_answer_exact"] == pytest.approx(50.0) and got["no_answer_exact"] == pytest.approx(50.0)
    assert m.normalise_answer("  The  Normans,  an army ") == "normans army"
