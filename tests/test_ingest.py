"""Ingest: every input format, ids, metadata and the viewpoint fallback chain."""
import gzip
import json

import pytest

from rag.errors import RagError
from rag.ingest import html_to_text, load, parse_fields
from tests.conftest import SEEDS


def test_seed_articles_carry_their_metadata():
    loaded = load([SEEDS])
    assert not loaded.rejected
    by_id = {a.id: a for a in loaded.articles}
    assert set(by_id) == {"independent-putin-playing-for-time", "rt-putin-trump-call-a-success"}
    rt = by_id["rt-putin-trump-call-a-success"]
    assert (rt.source, rt.viewpoint, rt.title) == ("RT", "pro-Russia", "Putin-Trump Call: A Success, Regardless of Details")
    assert rt.meta["kind"] == "opinion"
    assert not rt.text.startswith("---") and "viewpoint:" not in rt.text


def test_text_without_front_matter_takes_a_short_first_line_as_title(tmp_path):
    (tmp_path / "a.md").write_text("Short headline\n\nFirst sentence. Second one.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("A long first line that runs on. And on.\nNo blank line follows.\n", encoding="utf-8")
    arts = {a.id: a for a in load([tmp_path]).articles}
    assert arts["a"].title == "Short headline" and arts["a"].text == "First sentence. Second one."
    assert arts["b"].title == "" and arts["b"].text.startswith("A long first line")


def test_html_keeps_readable_text_only(tmp_path):
    page = ("<html><head><title>Page title</title><meta property='og:site_name' content='The Paper'>"
            "<style>p{color:red}</style><script>alert('x')</script></head><body><nav>Home | News</nav>"
            "<h1>Headline</h1><p>The first paragraph.</p><p>The second &amp; last.</p>"
            "<footer>Copyright</footer></body></html>")
    (tmp_path / "story.html").write_text(page, encoding="utf-8")
    [article] = load([tmp_path]).articles
    assert article.title == "Headline" and article.source == "The Paper"
    assert "The first paragraph." in article.text and "The second & last." in article.text
    for junk in ("alert", "color:red", "Home | News", "Copyright"):
        assert junk not in article.text


def test_jsonl_with_field_mapping_and_extra_metadata(tmp_path):
    rows = [{"ID": "x1", "content_original": "Alpha text here.", "bias_text": "left", "topic": "t"},
            {"content_original": "Beta text here.", "bias_text": "right", "source": "S"}]
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    fields = parse_fields(["text=content_original", "viewpoint=bias_text", "id=ID"])
    loaded = load([path], fields)
    assert not loaded.rejected
    first, second = loaded.articles
    assert (first.id, first.viewpoint, first.meta["topic"]) == ("x1", "left", "t")
    # no id given and no file stem per record: a content hash
    assert len(second.id) == 16 and second.id == second.content_hash[:16]
    assert second.source == "S" and second.viewpoint == "right"


def test_viewpoint_falls_back_to_source_then_title_then_id(tmp_path):
    rows = [{"text": "One.", "source": "Src"}, {"text": "Two.", "title": "Ttl"}, {"text": "Three.", "id": "i3"}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    groups = [a.group() for a in load([tmp_path / "r.jsonl"]).articles]
    assert groups == ["Src", "Ttl", "i3"]


def test_unknown_field_name_is_a_clear_error():
    with pytest.raises(RagError, match="--field colour=c: unknown field 'colour'"):
        parse_fields(["colour=c"])


def test_jsonl_without_the_text_field_names_the_file(tmp_path):
    path = tmp_path / "wrong.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    loaded = load([path])
    assert loaded.articles == ()
    assert any(str(path) in r.path and "'text'" in r.reason for r in loaded.rejected)


def test_html_to_text_drops_script_content():
    text, meta = html_to_text("<p>Visible.</p><script>var secret = 1;</script>")
    assert text == "Visible." and "secret" not in text


def test_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(RagError, match="nope.txt: no such file"):
        load([tmp_path / "nope.txt"])
