"""Issue 13, item 4: scraped page furniture is never quoted, and a quote never
crosses a paragraph break. The snippets are real lines of AllSides articles
(allsides-12k, their IDs beside them), none of them held out."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import rag
from rag.chunk import split_sentences
from rag.cruft import is_cruft

# The issue's own example (FGDj4LmWb5AHOfnB, CNN): the pronoun "Those" made the
# caption above the quote's lead, so the quote began "MUST WATCH ... 03:42\n\n".
CNN = ("Kerry said the parties need to work privately at \"the highest levels of government\" in order to "
       "bring about a peaceful resolution to the situation.\n\n"
       "JUST WATCHED North Korean Crisis Replay More Videos ... MUST WATCH North Korean Crisis 02:59\n\n"
       "JUST WATCHED South calm as North Korea threatens Replay More Videos ... "
       "MUST WATCH South calm as North Korea threatens 03:42\n\n"
       "Those areas of concern and focus are agreeing to a climate change pact for the next decade, lowering "
       "carbon emissions to reduce their impact on the climate, and planning new growth so that it has minimal "
       "effect on the climate, Kerry said.\n\n"
       "In late November nearly 200 delegations gathered in Qatar to advance discussions on a new treaty.")

CRUFT = [  # one line each; every sentence on it is cruft
    "JUST WATCHED Japan on alert after N. Korea threats Replay More Videos ... "
    "MUST WATCH Japan on alert after N. Korea threats 02:57",  # FGDj4LmWb5AHOfnB, CNN
    "Image copyright Reuters Image caption The meeting involved Mr Trump's son, his son-in-law, "
    "and then-campaign chairman Paul Manafort",  # nlDpjaqz1F2969Ah, BBC
    "Enlarge this image toggle caption Evan Vucci/AP Evan Vucci/AP",  # c3Y1yAqT9RAQdIwm, NPR
    "Secretary of State Mike Pompeo, left, hands off the microphone to Secretary of Defense Mark Esper to "
    "deliver a statement on Iraq and Syria, at President Donald Trump's Mar-a-Lago property, Sunday, Dec. 29, "
    "2019, in Palm Beach, Fla. (AP Photo/ Evan Vucci)",  # DrLAb4d3kSYc8tbt, AP caption
    "Advertisement", "ADVERTISEMENT", "Advertisement Continue reading the main story", "AD",
    "Story Continued Below",  # Politico
    "SHARE THIS ARTICLE Share Tweet Post Email",  # Bloomberg
    "More:Trump starts clock on withdrawing from NAFTA even as trade talks with Canada continue",  # USA TODAY
    "READ MORE:",  # National Review
    "Copyright © 2019 The Washington Times, LLC. Click here for reprint permission.",
    "Get the Monitor Stories you care about delivered to your inbox. Sign up By signing up, you agree to our "
    "Privacy Policy.",  # GUSpm10QiGJOh8lB, Christian Science Monitor
    "Sign up for Daily Newsletters Manage Newsletters",  # Washington Times
    "CLICK HERE TO GET THE FOX NEWS APP",
    "Fox News' Jason Donner contributed to this report.",  # GS1X5PKBFP8lLNr7
    "Follow @politico",
    "Updated at 6:17 p.m. ET",  # NPR
    "Slideshow (16 Images)",  # Reuters
]

NOT_CRUFT = [  # real sentences that come near a rule
    "Sen. Jeanne Shaheen, D-N.H., who has been one of the most outspoken Democratic critics of the Affordable "
    "Care Act rollout, introduced a bill last week that would give people an extra two months to sign up for "
    "insurance next year.",  # Tb5XZXvXkCg6isGJ, Fox News
    "“I learned from the best — Barack Obama — on what to look for,” he wrote in a campaign newsletter.",
    "ADVERTISEMENT The Senate left D.C. on Thursday evening with most lawmakers not expected to return to "
    "Washington until after Labor Day.",  # bHW7IibPn104TEaw, The Hill: the marker ran into real text
    "Updated at 6:08 pm — Romney spokesman Rick Gorka had an exchange with reporters on the Romney plane Monday "
    "did little to shed much light on the candidate's views.",  # WnfEzzZw0nGYM3ti, NPR
    "FOLLOW-UP",  # LQ7TGGwswmimCVBT, Reason: a heading, not a share prompt
    "More than 800,000 soldiers have been lost so far.",
    "Kerry met Sunday with Japanese Foreign Minister Fumio Kishida to discuss regional tensions, climate change "
    "and cybersecurity.",  # FGDj4LmWb5AHOfnB
]


def _sentences(text: str):
    return [(span, text[span.start:span.end]) for span in split_sentences(text)]


@pytest.mark.parametrize("line", CRUFT)
def test_every_sentence_of_a_furniture_line_is_cruft(line):
    text = f"A real sentence opens the article.\n\n{line}\n\nAnother real one closes it."
    spans = _sentences(text)
    assert [is_cruft(text, span) for span, _ in spans] == [False] + [True] * (len(spans) - 2) + [False]


@pytest.mark.parametrize("sentence", NOT_CRUFT)
def test_real_sentences_near_a_rule_are_not_cruft(sentence):
    text = f"{sentence}\n\nThe next paragraph."
    assert not any(is_cruft(text, span) for span, _ in _sentences(text))


def test_a_sentence_never_spans_a_line_break_and_stays_verbatim():
    spans = _sentences(CNN)
    assert all("\n" not in piece and piece == piece.strip() for _, piece in spans)
    assert [is_cruft(CNN, span) for span, _ in spans] == [False, True, True, True, True, False, False]


def test_cruft_is_never_quoted_and_a_quote_never_takes_a_lead_across_a_paragraph(tmp_path, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kerry.txt").write_text(f"---\ntitle: Kerry in Japan\nviewpoint: left\n---\n{CNN}\n", encoding="utf-8")
    (docs / "other.txt").write_text("---\ntitle: Other\nviewpoint: right\n---\nBakers prefer sourdough starters "
                                    "kept at room temperature.\n", encoding="utf-8")
    rag.build([docs], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    ix = rag.open(tmp_path / "index", embedder=hash_embedder)
    text = ix.article("kerry").text
    areas = ix.ask("Which areas of concern and focus did Kerry name on the climate?", k=5)
    top = areas.viewpoints[0].answers[0]
    assert top.text.startswith("Those areas of concern"), top.text  # not "MUST WATCH ... 03:42\n\nThose..."
    caption = ix.ask("South calm as North Korea threatens: North Korean crisis", k=5)
    for answer in (areas, caption):
        for side in answer.viewpoints:
            for quote in side.answers:
                assert text[quote.start:quote.end] == quote.text if quote.doc_id == "kerry" else True
                assert "\n" not in quote.text, quote.text
                assert "WATCH" not in quote.text, quote.text


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_cnn_article_quotes_its_paragraph_not_the_video_caption(tmp_path, model):
    """The issue's example, end to end: the real article with the real model."""
    from conftest import require_shared_data

    ids = {"FGDj4LmWb5AHOfnB", "GUSpm10QiGJOh8lB", "bHW7IibPn104TEaw"}  # CNN, CS Monitor, The Hill
    with gzip.open(require_shared_data("allsides-12k.jsonl.gz"), "rt", encoding="utf-8") as stream:
        records = [r for r in map(json.loads, stream) if r["ID"] in ids]
    corpus = Path(tmp_path / "articles.jsonl")
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    fields = {"id": "ID", "text": "content_original", "viewpoint": "bias_text"}
    rag.build([corpus], index=tmp_path / "index", fields=fields, embedder=model, progress=False)
    ix = rag.open(tmp_path / "index", embedder=model)
    answer = ix.ask("What areas of concern on climate change did Kerry say the US and China agreed on?", k=3)
    quotes = [q for side in answer.viewpoints for q in side.answers]
    assert any(q.text.startswith("Those areas of concern and focus") for q in quotes), [q.text for q in quotes]
    for question in ("South calm as North Korea threatens", "How do I get Monitor stories delivered to my inbox?",
                     "Who is bankrolling Kim Jong Un?"):
        quotes += [q for side in ix.ask(question, k=3).viewpoints for q in side.answers]
    for quote in quotes:
        text = ix.article(quote.doc_id).text
        assert text[quote.start:quote.end] == quote.text
        assert "\n" not in quote.text, quote.text
        assert not any(is_cruft(text, s) for s in split_sentences(text)
                       if quote.start <= s.start and s.end <= quote.end), quote.text
