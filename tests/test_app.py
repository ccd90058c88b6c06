"""The app's rendering and handlers, calling the real library on the seed index.
(The real page in a real browser is tests/test_browser.py.)"""
from __future__ import annotations

import gzip
import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import gradio as gr
import pytest

import app
import app_render
import rag
import rag.store.commit as commit
import rag.store.index as store

pytestmark = pytest.mark.slow  # real model and index

HOSTILE = ("Harbour lanterns of Tallinn <script>window.__pwned = 1</script> glow every night.\n"
           "The harbour lanterns <img src=x onerror=\"window.__pwned = 2\"> were repaired in ${alert(3)} spring.\n"
           "Read [the lantern report](javascript:alert(4)) about harbour lanterns of Tallinn.\n"
           "Harbour lanterns of Tallinn ![lantern](http://evil.example/lantern.png) burn paraffin.\n")
SAFE_TAGS = {"div", "section", "h3", "h4", "ol", "li", "blockquote", "a", "span", "p", "details", "summary",
             "mark", "article", "ul", "b"}


class Markup(HTMLParser):
    """Every tag and attribute in a fragment, to check nothing active got through."""

    def __init__(self, fragment: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(fragment)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(fragment: str) -> None:
    for tag, attrs in Markup(fragment).tags:
        assert tag in SAFE_TAGS, f"unexpected <{tag}> in rendered HTML"
        assert not any(name.startswith("on") or name in ("src", "style") for name in attrs), (tag, attrs)
        href = attrs.get("href")
        assert href is None or href.startswith("#cite/") or href.startswith("https://"), href


def citations(fragment: str) -> list[tuple[str, int, int]]:
    found = []
    for tag, attrs in Markup(fragment).tags:
        if tag == "a" and "cite" in attrs.get("class", ""):
            doc, start, end = re.fullmatch(r"#cite/([^/]*)/(\d+)/(\d+)", attrs["href"]).groups()
            found.append((rag_unquote(doc), int(start), int(end)))
    return found


def rag_unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


@pytest.fixture()
def make_app(tmp_path):
    def make(ix, **options):
        uploads = tmp_path / "uploads"
        uploads.mkdir(exist_ok=True)
        return app.App(ix, uploads, **options)

    return make


def upload_copy(tmp_path: Path, name: str, data: bytes | str) -> str:
    """A file as Gradio hands it over: in its own cache folder (the app deletes it)."""
    folder = tmp_path / "gradio-cache" / str(len(list(tmp_path.glob("gradio-cache/*"))))
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


# ---- rendering -----------------------------------------------------------------


def test_esc_leaves_no_markup_or_template_syntax():
    out = app_render.esc('<script>x()</script><img src=x onerror="y()"> ${z} `w`')
    assert not re.search(r"[<>\"`$]", out)
    assert Markup(out).tags == []


def test_answer_has_one_column_per_viewpoint_with_verbatim_cited_quotes(seed_index):
    answer = seed_index.ask("What did Putin agree to on the ceasefire?")
    rendered = app_render.render_answer(answer)
    assert_inert(rendered)
    columns = re.findall(r'<section class="vp[^"]*"><h4>(.*?)</h4>', rendered)
    assert columns == [v.viewpoint for v in answer.viewpoints]
    assert set(columns) == set(seed_index.stats()["viewpoints"])
    cited = citations(rendered)
    assert len(cited) == sum(len(v.answers) for v in answer.viewpoints) > 0
    for doc_id, start, end in cited:
        assert app_render.esc(seed_index.article(doc_id).text[start:end]) in rendered


def test_a_turn_shows_the_question_in_full_and_its_coverage_above_the_columns(seed_index):
    question = "What did Putin agree to on the ceasefire, <b>and</b> what did he refuse in exchange?"
    answer = seed_index.ask(question)
    rendered = app_render.render_turn(answer)
    assert_inert(rendered)
    head = re.match(r'<div class="turn"><h3 class="asked">(.*?)</h3><p class="coverage">(.*?)</p>'
                    r'<div class="vp-grid">', rendered)
    assert head, rendered[:300]
    assert head.group(1) == app_render.esc(question)  # in full, as text
    assert head.group(2) == app_render.coverage_line(answer)
    addressed, silent = answer.coverage.addressed, answer.coverage.silent
    assert len(addressed) + len(silent) == len(answer.viewpoints) == 2
    if silent:
        assert f"{len(addressed)} of 2" in head.group(2) and silent[0] in head.group(2)
    else:
        assert head.group(2) == "Both viewpoints address this"
    off_topic = app_render.render_turn(seed_index.ask("How do I bake sourdough bread?"))
    assert '<p class="coverage">Neither viewpoint addresses this</p>' in off_topic


def test_coverage_line_names_the_silent_sides():
    from rag.types import Coverage

    def line(addressed, silent, more=0):
        return app_render.coverage_line(rag.Answer("q", (), more_viewpoints=more, coverage=Coverage(addressed, silent)))

    assert line(("left", "center"), ("right",)) == "2 of 3 viewpoints address this; right is silent"
    assert line(("left",), ("center", "right")) == "1 of 3 viewpoints addresses this; center and right are silent"
    assert line(("a", "b", "c", "d"), ()) == "All 4 viewpoints address this"
    assert line((), ("a", "b", "c")) == "None of the 3 viewpoints addresses this"
    assert line(("a",), ("b",), more=4) == "1 of 2 viewpoints addresses this; b is silent (4 more viewpoints not shown)"


def test_timeline_counts_articles_per_viewpoint_per_period_with_gaps():
    arts = [rag.Article(f"a{i}", "text", viewpoint=v, date=d) for i, (v, d) in enumerate(
        [("left", "2012-05-25"), ("left", "2012-05-28"), ("right", "12/29/17"), ("center", "2015-01-01"),
         ("right", ""), ("left", "not a date")])]
    counts, unit, undated = app_render.timeline(arts)
    assert (unit, undated) == ("year", 2)
    assert list(dict.fromkeys(counts["period"])) == [str(y) for y in range(2012, 2018)]  # 2013, 2014 ... too
    table = {(r.period, r.viewpoint): r.articles for r in counts.itertuples()}
    assert table[("2012", "left")] == 2 and table[("2017", "right")] == 1 and table[("2013", "left")] == 0
    assert counts["articles"].sum() == 4
    many = [rag.Article(f"m{i}", "t", viewpoint=f"side{i % 12}", date="2020-02-02") for i in range(24)]
    counts, unit, _ = app_render.timeline(many)
    assert unit == "month" and len(set(counts["viewpoint"])) == app_render.TIMELINE_SERIES + 1  # the rest: "other"
    assert counts.loc[counts["viewpoint"] == "other", "articles"].sum() == 8


def test_a_silent_viewpoint_says_so(seed_index):
    rendered = app_render.render_answer(seed_index.ask("How do I bake sourdough bread?"))
    sections = rendered.split("<section")[1:]
    assert sections and all("Does not address this." in s for s in sections)


def test_article_view_marks_the_quoted_span(seed_index):
    quote = seed_index.ask("Is Putin playing for time?").viewpoints[0].answers[0]
    rendered = app_render.render_article(seed_index.article(quote.doc_id), quote.start, quote.end)
    assert f'<mark class="cited">{app_render.esc(quote.text)}</mark>' in rendered
    assert "".join(Markup(rendered).text).count(quote.text) >= 1
    no_span = app_render.render_article(seed_index.article(quote.doc_id), 10, 10**9)  # out of range: no mark
    assert "<mark" not in no_span


def test_hostile_article_renders_as_text(writable_seed_index, model, make_app, tmp_path):
    ix = rag.open(writable_seed_index, embedder=model)
    shop = make_app(ix)
    name = 'lanterns<img src=x onerror=alert(1)>.md'
    report = shop.upload([upload_copy(tmp_path, name, HOSTILE)], "lantern-side", "Evil Wire", "")[0]
    assert_inert(report)
    (doc_id,) = [a.id for a in ix.snapshot().articles if a.viewpoint == "lantern-side"]
    answer = ix.ask("What about the harbour lanterns of Tallinn?")
    for rendered in (app_render.render_answer(answer), app_render.render_article(ix.article(doc_id), 0, 20)):
        assert_inert(rendered)
        shown = "".join(Markup(rendered).text)
        assert "<script>" in shown or "<img" in shown or "javascript:" in shown  # visible, as text
    article = app_render.render_article(ix.article(doc_id))
    assert "<script>window.__pwned = 1</script>" in "".join(Markup(article).text)


def test_citation_click_opens_the_article_at_the_quote(seed_index, make_app):
    shop = make_app(seed_index)
    quote = seed_index.ask("Did Russia make big concessions?").viewpoints[0].answers[0]
    event = gr.EventData(None, {"doc_id": quote.doc_id, "start": quote.start, "end": quote.end})
    assert f'<mark class="cited">{app_render.esc(quote.text)}</mark>' in shop.open_article(event)


@pytest.mark.parametrize("data", [{"doc_id": "no-such-article", "start": 1, "end": 2},
                                  {"doc_id": "rt-putin-trump-call-a-success", "start": "x", "end": 2}, None])
def test_a_forged_citation_event_is_refused(seed_index, make_app, data):
    with pytest.raises(gr.Error):
        make_app(seed_index).open_article(gr.EventData(None, data))


# ---- chat and API ---------------------------------------------------------------


def test_follow_up_questions_use_the_conversation(seed_index, make_app):
    shop = make_app(seed_index)
    first, follow = "Did Russia make big concessions?", "And what did he refuse?"
    assert seed_index.ask(follow, history=[first]).query != seed_index.ask(follow).query
    chat, questions, box = shop.ask(first, [], [], "viewpoint", [], "", "")
    chat, questions, box = shop.ask(follow, chat, questions, "viewpoint", [], "", "")
    assert box == "" and questions == [first, follow]
    assert [m["role"] for m in chat] == ["assistant", "assistant"]  # one message per turn, question first
    assert chat[1]["content"] == app_render.render_turn(seed_index.ask(follow, history=[first]))
    assert "read with the conversation" in chat[1]["content"]


def test_filters_restrict_sources_and_check_dates(seed_index, make_app):
    shop = make_app(seed_index)
    source = seed_index.article("rt-putin-trump-call-a-success").source
    chat, _, _ = shop.ask("How did the call go?", [], [], "source", [source], "", "")
    cited = citations(chat[-1]["content"])
    assert cited and {seed_index.article(d).source for d, _, _ in cited} == {source}
    chat, _, _ = shop.ask("How did the call go?", [], [], "viewpoint", [], "2030-01-01", "")
    assert "No article matches" in chat[-1]["content"]
    with pytest.raises(gr.Error, match="expected a date"):
        shop.ask("How did the call go?", [], [], "viewpoint", [], "March 2025", "")
    with pytest.raises(gr.Error):
        shop.ask("   ", [], [], "viewpoint", [], "", "")


def test_ask_api_returns_the_cli_json_contract(seed_index, make_app):
    result = make_app(seed_index).ask_api("Is Putin playing for time?", history=[], k=2)
    assert set(result) >= {"question", "viewpoints"}
    assert result["viewpoints"] and all(len(v["answers"]) <= 2 for v in result["viewpoints"])
    for view in result["viewpoints"]:
        assert set(view) >= {"viewpoint", "abstained", "answers"}
        for a in view["answers"]:
            assert set(a) >= {"text", "score", "doc_id", "title", "source", "start", "end", "passage"}
            assert a["text"] == seed_index.article(a["doc_id"]).text[a["start"]:a["end"]]


# ---- the corpus -------------------------------------------------------------------


def test_upload_indexes_checked_files_with_defaults_and_deletes_them(writable_seed_index, model, make_app,
                                                                     tmp_path):
    ix = rag.open(writable_seed_index, embedder=model)
    shop = make_app(ix)
    files = [upload_copy(tmp_path, "lighthouse strike.md", "Lighthouse keepers strike\n\nKeepers walked out."),
             upload_copy(tmp_path, "scan.txt", b"%PDF-1.4 binary"),
             upload_copy(tmp_path, "fake.jsonl.gz", b"not gzip"),
             upload_copy(tmp_path, "run.sh", "echo hi")]
    report, stats, *_ = shop.upload(files, "coastal", "Harbour Times", "")
    assert "added (1)" in report and "lighthouse-strike" in report
    for name in ("scan.txt", "fake.jsonl.gz", "run.sh"):
        assert f"rejected:</b> {name}:" in report
    assert "<b>3</b> articles" in stats and "coastal 1" in stats
    article = ix.article("lighthouse-strike")
    assert (article.viewpoint, article.source, article.title) == ("coastal", "Harbour Times", "Lighthouse keepers strike")
    assert not any(Path(f).exists() for f in files)
    assert list(shop.upload_dir.iterdir()) == []  # the staging folder is gone too
    report, stats, *_ = shop.remove("lighthouse-strike", "")
    assert "removed (1)" in report and "<b>2</b> articles" in stats


def test_jsonl_gz_upload_reports_bad_lines(writable_seed_index, model, make_app, tmp_path):
    ix = rag.open(writable_seed_index, embedder=model)
    lines = '{"id": "g1", "text": "Ferries resumed on Monday.", "source": "Port News"}\n{oops\n'
    report = make_app(ix).upload([upload_copy(tmp_path, "batch.jsonl.gz", gzip.compress(lines.encode()))],
                                 "ports", "", "")[0]
    assert "added (1)" in report and "batch.jsonl.gz:2" in report
    assert ix.article("g1").viewpoint == "ports" and ix.article("g1").source == "Port News"


def test_corpus_changes_need_the_password_beyond_localhost(writable_seed_index, model, make_app, tmp_path):
    ix = rag.open(writable_seed_index, embedder=model)
    open_door = make_app(ix, password=None, local=False)
    assert open_door.password_required
    with pytest.raises(gr.Error, match="off"):
        open_door.remove("rt-putin-trump-call-a-success", "")
    locked = make_app(ix, password="s3cret", local=False)
    upload = upload_copy(tmp_path, "x.md", "Some text.")
    with pytest.raises(gr.Error, match="Wrong password"):
        locked.upload([upload], "", "", "guess")
    assert not Path(upload).exists()  # refused uploads are not kept either
    with pytest.raises(gr.Error, match="Wrong password"):
        locked.remove("rt-putin-trump-call-a-success", "guess")
    assert ix.stats()["articles"] == 2
    locked.remove("rt-putin-trump-call-a-success", "s3cret")
    assert ix.stats()["articles"] == 1
    assert not make_app(ix, local=True).password_required


def test_questions_are_answered_while_an_upload_is_indexing(writable_seed_index, model, make_app, tmp_path,
                                                            monkeypatch):
    ix = rag.open(writable_seed_index, embedder=model)
    shop = make_app(ix)
    writing, release = threading.Event(), threading.Event()
    real_write = commit.write

    def slow_write(*args, **kwargs):
        writing.set()
        assert release.wait(60)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(commit, "write", slow_write)
    upload = threading.Thread(target=shop.upload, args=(
        [upload_copy(tmp_path, "ferry.md", "Ferry strike\n\nThe Baltic ferry crews went on strike.")],
        "maritime", "", ""))
    upload.start()
    try:
        assert writing.wait(60), "the upload never reached its write"
        chat, _, _ = shop.ask("Is Putin playing for time?", [], [], "viewpoint", [], "", "")  # lock is held
        assert citations(chat[-1]["content"])
    finally:
        release.set()
        upload.join(60)
    assert ix.article("ferry").viewpoint == "maritime"


@pytest.mark.parametrize("name,data,reason", [
    ("a.jsonl.gz", b"plain", "not gzip"),
    ("a.jsonl", b"title: x\n", "not JSON lines"),
    ("a.md", "caf\u00e9".encode("latin-1"), "not UTF-8"),
    ("a.txt", b"text\x00with nul", "binary"),
    ("a.md", b"  \n", "empty"),
    ("a.exe", b"MZ", "unsupported"),
])
def test_check_upload_looks_at_content(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    assert reason in app.check_upload(path, name)


def test_check_upload_limits_size(tmp_path, monkeypatch):
    path = tmp_path / "big.md"
    path.write_text("word " * 100)
    assert app.check_upload(path, "big.md") is None
    monkeypatch.setattr(app, "MAX_UPLOAD_BYTES", 100)
    assert "too large" in app.check_upload(path, "big.md")


def test_safe_name_keeps_uploads_inside_their_folder():
    assert app.safe_name("../../etc/passwd") == "passwd"
    assert "/" not in app.safe_name("a/b\\c<d>.md") and app.safe_name("...") == "upload"


def test_host_and_port_come_from_flags_then_gradio_variables(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = app.parse_args([])
    assert (args.host, args.port, args.index) == ("127.0.0.1", 7860, "index")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9000")
    assert (app.parse_args([]).host, app.parse_args([]).port) == ("0.0.0.0", 9000)
    args = app.parse_args(["--host", "localhost", "--port", "7000", "--index", "elsewhere"])
    assert (args.host, args.port, args.index) == ("localhost", 7000, "elsewhere")


def test_the_page_wires_every_event_and_one_public_api(seed_index, make_app):
    demo = app.build_demo(make_app(seed_index))
    public = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert public == ["ask"]


def test_app_docstring_examples():
    import doctest

    import app_render

    assert doctest.testmod(app).failed == 0 and doctest.testmod(app_render).failed == 0
