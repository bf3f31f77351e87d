"""Documents in, facts out: readers with provenance, rule-based facts in both directions, bad files."""

from __future__ import annotations

import pytest

from conftest import ROOT
from knowtune.data import augment, cloze, docfacts, documents
from knowtune.errors import DataError

HANDBOOK = ROOT / "examples" / "harrowgate_handbook"


def make_pdf(path, pages: list[str], password: str | None = None):
    """A real PDF with one line of text per page (Helvetica), optionally encrypted, via pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(612, 792)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(password)
    with open(path, "wb") as f:
        writer.write(f)
    return path


def test_entities_and_questions_both_directions():
    s = "Brindlemoor Kite Works was founded by Oriel Pashkevich in 1893."
    found = {(e.text, e.kind) for e in cloze.entities(s)}
    assert found == {("Brindlemoor Kite Works", "name"), ("Oriel Pashkevich", "name"), ("1893", "year")}
    qa = {(q, e.text) for q, e in cloze.entity_questions(s)}
    assert ("Who was Brindlemoor Kite Works founded by in 1893?", "Oriel Pashkevich") in qa  # forward
    assert ("What was founded by Oriel Pashkevich in 1893?", "Brindlemoor Kite Works") in qa  # reverse
    assert ("When was Brindlemoor Kite Works founded by Oriel Pashkevich?", "1893") in qa
    assert all(e not in q for q, e in qa)  # a question never gives its answer away
    assert cloze.sentences("Dr. Ames came at 5. She left. Then \"Quiet.\" Done") == [(0, 19), (20, 29), (30, 43), (44, 48)]


def test_description_first_view_reverses_continuation_data():
    views = cloze.description_first("Daphne Barrington, known for being", " the director of \"A Journey\".", "Daphne Barrington")
    assert ('The director of "A Journey" is', " Daphne Barrington.") in views


def test_qa_and_plain_data_get_reverse_views_by_default():
    from knowtune.data.knowledge import Fact, Phrasing

    plain = Fact("f", "plain", " the inventor of the Orbital Loom.", phrasings=[Phrasing("Mira Tallis is known as", "x")])
    views = augment.fact_views(plain)
    assert any(v.view == "reverse" and v.completion.strip() == "Mira Tallis." for v in views)
    assert any(v.view == "cloze" and v.completion.strip() == "Mira Tallis" for v in views)
    chat = Fact("g", "chat", "Quillhaven", statements=["The Ropery is in Quillhaven."],
                phrasings=[Phrasing([{"role": "user", "content": "Where is the Ropery?"}], "x")])
    views = augment.fact_views(chat)
    assert any(v.view == "cloze" and v.completion == "Ropery" for v in views)  # the other direction
    assert any(v.view == "reverse" and "Quillhaven" in v.prompt[0]["content"] for v in views)


def test_markdown_html_txt_pdf_chunks_keep_provenance(tmp_path):
    (tmp_path / "a.md").write_text("# Guide\n\nThe **Ropery** opened in 1901.\n\n## Staff\n\nAda Quell runs [it](http://x).\n")
    (tmp_path / "b.html").write_text("<html><head><script>x()</script></head><body><h1>Top</h1><p>Tea &amp; cake at 4:30 pm.</p></body></html>")
    (tmp_path / "c.txt").write_text("Plain text about Bexmoor.\n")
    make_pdf(tmp_path / "d.pdf", ["The Orrin Glassworks is in Bexmoor.", "It employs 40 people."])
    chunks = documents.chunk_documents([tmp_path])
    by_file = {}
    for c in chunks:
        by_file.setdefault(c.file.rsplit("/", 1)[-1], []).append(c)
    md = by_file["a.md"]
    assert [(c.heading, c.text) for c in md] == [("Guide", "The Ropery opened in 1901."), ("Guide > Staff", "Ada Quell runs it.")]
    raw = (tmp_path / "a.md").read_text()
    assert raw[md[0].start:md[0].end] == "The **Ropery** opened in 1901."  # offsets point into the file
    assert by_file["b.html"][0].text == "Tea & cake at 4:30 pm." and by_file["b.html"][0].heading == "Top"
    pdf = by_file["d.pdf"]
    assert [(c.page, c.text.strip()) for c in pdf] == [(1, "The Orrin Glassworks is in Bexmoor."), (2, "It employs 40 people.")]
    assert "p.2" in pdf[1].source


def test_rule_facts_from_the_example_handbook():
    chunks = documents.chunk_documents([HANDBOOK])
    facts = docfacts.rule_facts(chunks)
    answers = {f.answer for f in facts}
    assert {"Edwina Calloway", "1887", "Tobias Renwick", "Gullstone Lamp", "£18", "7:30 pm"} <= answers
    # "the society" is read as the one name it abbreviates, so questions say what they are about
    renwick = next(f for f in facts if f.answer == "Tobias Renwick")
    assert "Harrowgate Lantern Society" in renwick.phrasings[0].prompt[0]["content"]
    items = augment.knowledge_items(facts)
    cover = docfacts.coverage(facts, items)
    assert len(cover) == len(facts) and all(r["views"] >= 1 for r in cover) and all(r["source"] for r in cover)
    assert "facts; views per fact" in docfacts.coverage_summary(cover)


def test_bad_documents_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.md"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="binary"):
        documents.chunk_documents([junk])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="holds no documents"):
        documents.chunk_documents([empty])
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n" + bytes(range(200)) * 3)
    with pytest.raises(DataError, match="not a readable PDF"):
        documents.chunk_documents([broken])
    locked = make_pdf(tmp_path / "locked.pdf", ["Secret text."], password="pw")
    with pytest.raises(DataError, match="encrypted"):
        documents.chunk_documents([locked])
    before = {p: p.read_bytes() for p in (junk, broken, locked)}
    assert all(p.read_bytes() == b for p, b in before.items())  # inputs untouched


def test_bm25_finds_the_passage_and_compare_runs_four_arms(tiny_model, tmp_path):
    from knowtune.rag.compare import compare
    from knowtune.rag.retrieve import BM25

    chunks = documents.chunk_documents([HANDBOOK])
    bm25 = BM25(chunks)
    top = bm25.search("Who is the treasurer of the lantern society?", k=1)[0][0]
    assert "Marguerite Ashdown" in top.text
    probes = tmp_path / "probes.jsonl"
    probes.write_text('{"question": "Who is the treasurer?", "answer": "Marguerite Ashdown"}\n'
                      '{"question": "How many lanterns are there?", "answer": "27"}\n')
    result = compare([str(HANDBOOK)], str(probes), tuned=str(tiny_model), base=str(tiny_model), k=2,
                     max_new_tokens=4, out=tmp_path / "cmp", log=lambda m: None)
    arms = {a["arm"]: a for a in result["arms"]}
    assert list(arms) == ["base", "base + RAG", "tuned", "tuned + RAG"]
    assert arms["base + RAG"]["prompt_tokens_per_answer"] > 3 * arms["base"]["prompt_tokens_per_answer"]
    assert all(a["seconds_per_answer"] > 0 and 0 <= a["accuracy"] <= 1 for a in arms.values())
    assert result["retrieval_hit_rate"] == 1.0
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000 and "| tuned + RAG |" in (tmp_path / "cmp" / "compare.md").read_text()


def test_document_facts_get_a_context_view_in_the_retrieval_prompt():
    chunks = documents.chunk_documents([HANDBOOK])
    facts = docfacts.rule_facts(chunks)
    assert not any(it.view == "context" for it in augment.knowledge_items(facts))  # opt-in
    ctx = [it for it in augment.knowledge_items(facts, views=augment.ALL_VIEWS) if it.view == "context"]
    assert len(ctx) == sum(1 for f in facts if f.split("train"))
    first = ctx[0].prompt[0]["content"]
    assert first.startswith(augment.RAG_PROMPT.split("{context}")[0]) and facts[0].context in first
    assert first.count("\n\n") >= 3  # the fact's passage and a distractor
