"""The audit tells the truth: short answer keys for sentence answers, facts asked fewer than three ways
trained whole and audited on questions written from their statement, documents always audited, unknown
questions made from the facts and judged declined or invented, abstention views that never teach an audit
question."""

from __future__ import annotations

import json

import pytest

from knowtune.data import augment, knowledge, unknowns
from knowtune.data.answerkey import clauses, short_key
from knowtune.data.docfacts import fact_sentences
from knowtune.data.validate import load_examples
from knowtune.errors import DataError
from knowtune.text import declines


def chat(q, a, system=None):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return json.dumps({"messages": msgs})


FAQ = [
    chat("When does the Tuesday shuttle leave the depot?", "Our Tuesday shuttle leaves the depot at 7:40 in the morning."),
    chat("Tuesday shuttle departure time?", "It goes out from the depot at 7:40 every Tuesday."),
    chat("Who runs the Pellow Street depot?", "The Pellow Street depot is run by Marta Quillon, our depot manager."),
    chat("Which line goes to Hollin Quay?", "The Amber Line is the one for Hollin Quay.", system="You are a transit helper."),
    chat("How much is a day ticket?", "A day ticket costs £4.50 for adults."),
    chat("When did the Amber Line open?", "The Amber Line opened in 1911, which makes it our oldest line."),
    chat("When did the Teal Line open?", "The Teal Line opened in 1964."),
    chat("Where is the lost property office?", "Lost property is kept at Saltmarket Interchange."),
    chat("What colour are the Teal Line trams?", "Teal Line trams are painted dark green."),
    chat("Who drives the night tram?", "The night tram is driven by Oskar Bellweather."),
]


@pytest.fixture
def faq_facts(tmp_path):
    p = tmp_path / "faq.jsonl"
    p.write_text("\n".join(FAQ) + "\n")
    facts = knowledge.group_facts(load_examples([p])[0])
    knowledge.split_facts(facts)
    knowledge.add_generated_questions(facts)
    return facts


def test_sentence_answers_get_the_entity_they_state_as_key():
    assert short_key("When does the Tuesday shuttle leave?", "Our Tuesday shuttle leaves the depot at 7:40 in the morning.") == "7:40"
    assert short_key("Who runs the depot?", "The depot is run by Marta Quillon, our depot manager.") == "Marta Quillon"
    assert short_key("When did the Amber Line open?", "The Amber Line opened in 1911, which makes it our oldest line.") == "1911"
    assert short_key("How do I get there?", "Take the Amber Line to the quay.", {"Amber"}) == "Amber Line"
    assert short_key("Who publishes it?", "Foxglove & Tallow Games") is None  # a short answer is its own key


def test_sentence_answers_keep_their_own_sentence_and_group_by_key(faq_facts):
    shuttle = next(f for f in faq_facts if f.answer == "7:40")
    assert len(shuttle.phrasings) >= 2  # both wordings of the shuttle time are one fact
    views = augment.fact_views(shuttle)
    answers = {v.completion for v in views if v.view == "answer"}
    assert answers <= {"Our Tuesday shuttle leaves the depot at 7:40 in the morning.", "It goes out from the depot at 7:40 every Tuesday."}
    assert any(v.completion == "7:40" for v in views if v.view == "template")


def test_facts_asked_fewer_than_three_ways_train_every_phrasing_and_get_generated_questions(faq_facts):
    for f in faq_facts:
        user = [p for p in f.phrasings if p.origin == "data"]
        assert all(p.split == "train" for p in user)  # nobody's only phrasing is held out
    test = knowledge.probes_for(faq_facts, "test")
    assert len(test) == len(faq_facts)
    depot = next(p for p in test if p.answer == "Marta Quillon")
    assert depot.origin == "generated" and "Marta Quillon" not in depot.prompt[-1]["content"]
    items = augment.knowledge_items(faq_facts, held_out=test + knowledge.probes_for(faq_facts, "dev"))
    knowledge.assert_no_leak([it.prompt for it in items if it.kind != "text"], test)


def test_clauses_cut_long_sentences_where_a_question_can_stand():
    assert clauses("The winery was started by Anselm Tessaro, a former ferryman who planted the vines.")[0] == "The winery was started by Anselm Tessaro."
    assert clauses("It was founded by Dr. Edda Vornholm in 1987.") == ["It was founded by Dr. Edda Vornholm in 1987."]


def test_unknown_questions_are_about_invented_or_unstated_names_and_never_taught(faq_facts):
    test = knowledge.probes_for(faq_facts, "test") + knowledge.probes_for(faq_facts, "dev")
    unknown = unknowns.unknown_probes(faq_facts, seed=0)
    assert unknown and all(u.split == "unknown" and u.answer == "" for u in unknown)
    data_text = " ".join(s for f in faq_facts for s in f.statements)
    subjects = [u.source.split(": ", 1)[1] for u in unknown]
    assert any(s not in data_text for s in subjects)  # invented names the data never mentions
    refusals = unknowns.abstention_items(faq_facts, 5, seed=0, held_out=test + unknown)
    assert refusals and all(declines(it.completion) for it in refusals)
    taught = {knowledge.prompt_key(it.prompt) for it in refusals}
    assert not taught & {knowledge.prompt_key(u.prompt) for u in unknown + test}
    for it in refusals:  # a refusal names what it does not know, and that is never a name of the data
        subject = it.completion.rsplit("about ", 1)[-1].rstrip(".") if "about" in it.completion else it.completion.split("mentions ")[-1].rstrip(".")
        assert subject.split()[0] not in data_text


def test_the_decline_judge():
    assert declines("I'm sorry, I don't have any information about Quelvar Station.")
    assert declines("I don't know.")
    assert declines("That isn't mentioned in what I was taught.")
    assert not declines("The Amber Line opened in 1911.")
    assert not declines("Marta Quillon runs the depot.")


def test_user_unknowns_file_with_line_numbered_errors(tmp_path):
    good = tmp_path / "u.jsonl"
    good.write_text('{"question": "Who founded the Quelvar depot?"}\n\n{"question": "What is the depot phone number?"}\n')
    probes = unknowns.read_unknowns(str(good))
    assert [p.source for p in probes] == [f"--unknowns {good}:1", f"--unknowns {good}:3"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine?"}\n{"q": "wrong key"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2, .*bad.jsonl:3"):
        unknowns.read_unknowns(str(bad))


def test_documents_tables_list_items_and_pronouns_become_askable_sentences():
    text = ("The station cook is Benedetta Karlsruud. She keeps the key to the dry stores.\n\n"
            "Station leader: Dr. Imre Tollaksen.\n\n"
            "| Building | Roof colour | Year built |\n|---|---|---|\n| Nordhus | Red | 1987 |\n| Gullbod | Yellow | 1994 |\n\n"
            "It is the job of the cook to order food.")
    said = fact_sentences(text, {"Benedetta", "Karlsruud", "Nordhus", "Gullbod"})
    assert "Benedetta Karlsruud keeps the key to the dry stores." in said
    assert "The station leader is Dr. Imre Tollaksen." in said
    assert "The roof colour of Gullbod is Yellow." in said and "The year built of Nordhus is 1987." in said
    assert "It is the job of the cook to order food." in said  # an "it" that means no one stays


def test_documents_always_get_held_out_questions(tmp_path):
    from knowtune.data import docfacts, documents

    doc = tmp_path / "h.md"
    doc.write_text("# Depot\n\n" + " ".join(f"The {w} depot was opened in {1900 + i} by Anna Kettleby, a tram driver who "
                                            f"had come from the coast." for i, w in
                                            enumerate(["north", "south", "east", "west", "river", "hill"])) + "\n")
    facts = docfacts.rule_facts(documents.chunk_documents([doc]))
    test = knowledge.probes_for(facts, "test")
    assert test and all(p.origin == "generated" for p in test)
    items = augment.knowledge_items(facts, held_out=test + knowledge.probes_for(facts, "dev"))
    knowledge.assert_no_leak([it.prompt for it in items if it.kind != "text"], test)


def test_calibration_error_and_threshold_by_hand():
    from knowtune.eval.calibration import NEVER, answered, choose_threshold, expected_calibration_error

    rows = [{"confidence": c, "correct": ok} for c, ok in [(0.95, True), (0.92, True), (0.85, False), (0.15, False), (0.12, True)]]
    # bins: [0.9,1.0): 2 right at mean 0.935 -> |1 - 0.935| = 0.065; [0.8,0.9): 0 of 1 at 0.85 -> 0.85;
    # [0.1,0.2): 1 of 2 at 0.135 -> 0.365. ECE = 2/5*0.065 + 1/5*0.85 + 2/5*0.365 = 0.342
    assert expected_calibration_error(rows) == pytest.approx(0.342)
    assert choose_threshold(rows, 1.0) == 0.92  # the two most confident are right, the third is not
    assert choose_threshold(rows, 0.6) == 0.12  # 3 right of 5 = 0.6 at the lowest threshold
    assert choose_threshold([{"confidence": 0.9, "correct": False}], 0.95) == NEVER
    assert answered(rows, 0.9) == {"threshold": 0.9, "coverage": 0.4, "precision": 1.0}


def test_token_confidence_stops_at_the_end_token():
    import math

    import torch

    from knowtune.eval.generate import token_confidence

    # vocabulary of 3, end token 2; row 0 writes [0, 2, 1]: only the first two count
    logits = [torch.log(torch.tensor([[0.5, 0.25, 0.25]])), torch.log(torch.tensor([[0.2, 0.3, 0.5]])),
              torch.log(torch.tensor([[0.1, 0.8, 0.1]]))]
    conf = token_confidence(tuple(logits), torch.tensor([[0, 2, 1]]), eos_id=2)
    assert conf[0] == pytest.approx(math.sqrt(0.5 * 0.5))


def test_facts_taught_with_a_system_prompt_are_also_taught_without_it(faq_facts):
    hollin = next(f for f in faq_facts if f.answer == "Amber Line" and "Hollin" in f.statements[0])
    answers = [v.prompt for v in augment.fact_views(hollin) if v.view == "answer"]
    assert any(m[0]["role"] == "system" for m in answers) and any(m[0]["role"] == "user" for m in answers)
    assert all(m[0]["role"] == "user" for m in (v.prompt for v in augment.fact_views(hollin) if v.view == "template"))


def test_no_abstention_views_when_the_ratio_is_zero(faq_facts):
    assert unknowns.abstention_items(faq_facts, 0) == []


def test_casual_forms_drop_filler_words_and_keep_the_question():
    assert knowledge.casual_forms("What is the fine for riding without a ticket?") == [
        "fine for riding without ticket?", "what is the fine for riding without a ticket"]
    assert knowledge.casual_forms("How can I reach Northmole Station by tram?")[0] == "How reach Northmole Station by tram?"
    assert knowledge.casual_forms("What is it?") == ["what is it"]  # no keyword form of two words or more


def test_casual_views_are_taught_and_casual_probes_never_are(faq_facts):
    test = knowledge.probes_for(faq_facts, "test")
    casual = knowledge.add_casual_probes(test, faq_facts)
    assert casual and all(p.origin == "casual" and p.split == "test" for p in casual)
    items = augment.knowledge_items(faq_facts, held_out=test + casual)
    assert any(it.view == "casual" for it in items)
    knowledge.assert_no_leak([it.prompt for it in items if it.kind != "text"], test + casual)
    taught = {knowledge.prompt_key(it.prompt) for it in items if it.kind == "chat"}
    assert not any(knowledge.prompt_key(p.prompt) in taught for p in casual)
    # each casual probe asks the fact its held-out question asks, with the same answer key
    by_fact = {p.fact_id: p.answer for p in test}
    assert all(by_fact[p.fact_id] == p.answer for p in casual)


def test_grounding_declines_specifics_the_data_never_pairs_with_the_subject(faq_facts):
    from knowtune.eval.grounding import Grounding

    g = Grounding.from_facts(faq_facts)
    # a right answer in other words: its specific is taught with the question's subject
    assert g.check("Hollin Quay: which tram line?", "Take the Amber Line to get there.") is True
    assert g.check("when did the teal line open", "It opened in 1964.") is True  # lower case: names still anchor
    # the wrong line for the place, a year taught for another line, an invented line: not grounded
    assert g.check("Which line goes to Hollin Quay?", "The Teal Line goes to Hollin Quay.") is False
    assert g.check("When did the Teal Line open?", "The Teal Line opened in 1911.") is False
    assert g.check("When did the Saffron Line open?", "The Saffron Line opened in 1964.") is False
    # nothing specific added, or a general question: not judged
    assert g.check("Does the Amber Line run at night?", "Yes, it does.") is None
    assert g.check("What is the capital of France?", "The capital of France is Paris.") is None


def test_audit_reports_what_grounding_would_decline(faq_facts):
    from knowtune.eval.audit import grounded_figures

    rows = lambda *pairs: [{"correct": c, "declined": False, "grounded": gr} for c, gr in pairs]  # noqa: E731
    fig = grounded_figures(rows((True, True), (False, False), (True, None), (False, True)),
                            rows((True, None), (True, None)), rows((False, False), (False, True)))
    assert fig["grounded_over_refusal_probes"] == 0.25 and fig["grounded_answered_correct"] == 2 / 3
    assert fig["grounded_over_refusal_retention"] == 0 and fig["grounded_unknowns_declined"] == 0.5
