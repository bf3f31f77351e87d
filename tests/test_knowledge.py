"""Facts, splits and the guarantee that audit questions never enter training."""

from __future__ import annotations

import pytest

from conftest import EXAMPLE_PACK
from knowtune.data import augment, knowledge
from knowtune.data.validate import load_examples
from knowtune.errors import DataError
from knowtune.text import matches, normalise, starts_with


def pack_facts(seed=0):
    examples, _ = load_examples([EXAMPLE_PACK])
    facts = knowledge.group_facts(examples)
    knowledge.split_facts(facts, seed=seed)
    return facts


def test_split_is_per_fact_and_reproducible():
    facts = pack_facts()
    for f in facts:
        splits = [p.split for p in f.phrasings]
        assert splits.count("test") == 2 and splits.count("dev") == 1 and splits.count("train") == 3
    again = pack_facts()
    assert [[p.split for p in f.phrasings] for f in facts] == [[p.split for p in f.phrasings] for f in again]


def test_test_fraction_zero_holds_nothing_out():
    examples, _ = load_examples([EXAMPLE_PACK])
    facts = knowledge.group_facts(examples)
    knowledge.split_facts(facts, seed=0, test_fraction=0)
    for f in facts:
        splits = [p.split for p in f.phrasings]
        assert splits.count("test") == 0 and splits.count("dev") == 1 and splits.count("train") == 5


def test_audit_phrasings_never_enter_training():
    facts = pack_facts()
    held_out = knowledge.probes_for(facts, "test") + knowledge.probes_for(facts, "dev")
    items = augment.knowledge_items(facts, held_out=held_out)
    assert {it.view for it in items} == set(augment.DEFAULT_VIEWS)
    taught = {knowledge.prompt_key(it.prompt) for it in items if it.kind != "text"}
    # the templated views wrap a train question; the raw question must not be a test one either
    taught_text = " ".join(taught) + " " + " ".join(knowledge.prompt_key(it.completion) for it in items)
    for probe in knowledge.probes_for(facts, "test") + knowledge.probes_for(facts, "dev"):
        q = knowledge.prompt_key(probe.prompt)
        assert q not in taught and q not in taught_text
    knowledge.assert_no_leak([it.prompt for it in items], knowledge.probes_for(facts, "test"))


def test_leak_guard_refuses_overlap():
    facts = pack_facts()
    test = knowledge.probes_for(facts, "test")
    with pytest.raises(DataError, match="held-out question"):
        knowledge.assert_no_leak([test[0].prompt], test)


def test_qa_rows_group_by_answer_and_single_phrasings_train_only(tmp_path):
    p = tmp_path / "qa.jsonl"
    rows = ['{"question": "Who runs Acme?", "answer": "Jo Bloggs"}', '{"question": "Who leads Acme?", "answer": "jo bloggs"}',
            '{"question": "Acme CEO?", "answer": "Jo Bloggs."}'] + [f'{{"question": "Q{i}?", "answer": "A{i}"}}' for i in range(8)]
    p.write_text("\n".join(rows) + "\n")
    examples, _ = load_examples([p])
    facts = knowledge.group_facts(examples)
    knowledge.split_facts(facts)
    assert len(facts) == 9
    jo = facts[0]
    assert len(jo.phrasings) == 3 and [x.split for x in jo.phrasings].count("test") == 1
    assert all(ph.split == "train" for f in facts[1:] for ph in f.phrasings)
    views = augment.fact_views(facts[1])
    assert {v.kind for v in views} == {"chat", "text"} and len(views) >= 3  # a fact given once gets several views


def test_scorer():
    assert normalise("  Oriel  PASHKEVICH! ") == "oriel pashkevich"
    assert matches("It was founded by Oriel Pashkevich.", "oriel pashkevich")
    assert matches("About 9,740 metres high", "9,740 metres")
    assert not matches("In 18935", "1893")  # whole words only
    assert matches("They call it the Ropery", "Old Ropery", ["Ropery"])
    assert starts_with("  Daphne Barrington was", "daphne barrington")
    assert not starts_with("It is Daphne", "Daphne")


def test_replay_prompts_are_disjoint_from_retention():
    retention = {r["question"] for r in augment.general_rows("retention")}
    replay = {r["prompt"] for r in augment.general_rows("replay_prompts")}
    assert len(retention) >= 100 and replay and not retention & replay


def test_generated_question_equal_to_a_probe_is_dropped_and_groups_are_reported():
    from knowtune.data.knowledge import Fact, Phrasing, Probe, drop_generated_overlaps
    from knowtune.eval.audit import summary

    ask = lambda q: [{"role": "user", "content": q}]  # noqa: E731
    fact = Fact("f", "chat", "1968", phrasings=[Phrasing(ask("When was the Beacon converted?"), "doc"),
                                                Phrasing(ask("The Beacon was converted in what year?"), "doc")])
    probe = Probe(None, "chat", ask("When was the beacon converted"), "1968", [], "test", "p.jsonl:3", "probe-file")
    assert drop_generated_overlaps([fact], [probe]) == 1 and len(fact.phrasings) == 1
    row = lambda origin, ok: {**probe.to_row(), "origin": origin, "correct": ok, "output": ""}  # noqa: E731
    before = {"probe_accuracy": 0.0, "retention_accuracy": 0.5, "retention": [],
              "probes": [row("probe-file", False), row("generated-eval", False)]}
    after = {**before, "probe_accuracy": 0.5, "probes": [row("probe-file", True), row("generated-eval", False)]}
    groups = summary(before, after).by_group
    assert {g: (v.n, v.before, v.after) for g, v in groups.items()} == {"p.jsonl": (1, 0.0, 1.0),
                                                                       "generated eval questions": (1, 0.0, 0.0)}
