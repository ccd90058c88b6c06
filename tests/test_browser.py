"""The real app in a real browser: `python app.py` in a subprocess (first start,
so it builds its index from seeds/; the corpus chart also on a slice of real
AllSides articles), driven by Playwright in Debian's Chromium.
A failing step leaves a screenshot in test-output/browser/."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import app_render
import rag
from tests.conftest import require_shared_data

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "test-output" / "browser"
ALLSIDES_EVERY = 40  # every 40th article of allsides-12k: ~300 real articles from 2007-2020
SEED_VIEWPOINTS = sorted({a.viewpoint for a in __import__("rag.ingest").ingest.load([ROOT / "seeds"]).articles})
HOSTILE = ("Harbour lanterns of Tallinn <script>window.__pwned = 1</script> glow every night.\n"
           "The harbour lanterns <img src=x onerror=\"window.__pwned = 2; alert(2)\"> were repaired in "
           "${alert(3)} spring.\n"
           "Read [the lantern report](javascript:alert(4)) about harbour lanterns of Tallinn.\n"
           "Harbour lanterns of Tallinn ![lantern](http://evil.example/lantern.png) burn paraffin.\n")


class Server:
    def __init__(self, folder: Path, index: Path | None = None):
        self.index = index or folder / "index"  # absent: the app must build it from seeds/ first
        self.uploads = folder / "uploads"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log: list[str] = []
        env = {**os.environ, "GRADIO_TEMP_DIR": str(self.uploads), "GRADIO_ANALYTICS_ENABLED": "False"}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--index", str(self.index),
                                      "--port", str(self.port)], cwd=folder, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True).start()

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any("Running on" in line for line in self.log):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the app did not start:\n" + "".join(self.log[-40:]))
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: `make browser` (or apt-get install chromium) installs it")
    server = Server(tmp_path_factory.mktemp("app"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def allsides_server(tmp_path_factory):
    """The app on an index of ~300 real AllSides articles (held-out ids left out), or on
    the index RAG_BROWSER_ALLSIDES_INDEX names (e.g. all of allsides-12k, built beforehand:
    BENCHMARKS.md's build command), read-only."""
    import gzip
    import json

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: `make browser` (or apt-get install chromium) installs it")
    given = os.environ.get("RAG_BROWSER_ALLSIDES_INDEX")
    if given:
        server = Server(tmp_path_factory.mktemp("allsides-app"), index=Path(given))
        try:
            server.wait_ready(600)
            yield server
        finally:
            server.stop()
        return
    source = require_shared_data("allsides-12k.jsonl.gz")
    held = set(require_shared_data("heldout-ids.txt").read_text().split())
    folder = tmp_path_factory.mktemp("allsides-app")
    with gzip.open(source, "rt") as lines, open(folder / "slice.jsonl", "w") as out:
        out.writelines(line for n, line in enumerate(lines)
                       if n % ALLSIDES_EVERY == 0 and json.loads(line)["ID"] not in held)
    rag.build([folder / "slice.jsonl"], index=folder / "index", progress=False,
              fields={"id": "ID", "text": "content_original", "viewpoint": "bias_text"})
    server = Server(folder, index=folder / "index")
    try:
        server.wait_ready(600)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: `make browser` (or apt-get install chromium) installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("#question textarea").wait_for()
    return page


@pytest.fixture()
def page(browser, server):
    page = open_page(browser, server.url)
    yield page
    page.close()


@pytest.fixture()
def step(page, request):
    """``with step("name"):`` saves a screenshot of the page if the step fails."""

    @contextmanager
    def run(name: str):
        try:
            yield
        except BaseException:
            OUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT / f"{request.node.name}--{name}.png"), full_page=True)
            raise

    return run


def ask(page, question: str):
    """Ask in the chat; return the new reply's grid of viewpoint columns."""
    replies = page.locator("#chat .vp-grid")
    before = replies.count()
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    page.wait_for_function(f"document.querySelectorAll('#chat .vp-grid').length > {before}")
    return replies.nth(before)


def shown_whole(page, locator) -> bool:
    """True when every line of the element's text is inside the chat's visible area and
    nothing covers it (the chat's label once sat over the first question)."""
    return page.evaluate("""(el) => {
        const chat = document.querySelector('#chat').getBoundingClientRect();
        const range = document.createRange();
        range.selectNodeContents(el);
        const rects = [...range.getClientRects()].filter((r) => r.width > 0);
        return rects.length > 0 && rects.every((r) => r.top >= chat.top && r.bottom <= chat.bottom &&
            [[r.left + 1, r.top + r.height / 2], [r.right - 1, r.top + r.height / 2],
             [r.left + r.width / 2, r.top + 2], [r.left + r.width / 2, r.bottom - 2]]
                .every(([x, y]) => el.contains(document.elementFromPoint(x, y))));
    }""", locator.element_handle())


def column(reply, viewpoint: str):
    """The reply's column for ``viewpoint`` (the chat's sanitizer drops data-* attributes)."""
    return reply.locator("section.vp").filter(has=reply.page.get_by_role("heading", name=viewpoint, exact=True))


def open_citation(page, link):
    """Click a citation; the article view must show the quote marked and in view."""
    link.click()
    mark = page.locator("#article mark.cited")
    mark.wait_for()
    page.wait_for_function("""() => {
        const m = document.querySelector('#article mark.cited').getBoundingClientRect();
        return m.top >= 0 && m.bottom <= window.innerHeight; }""")
    return mark


def upload(page, server, path: Path, viewpoint: str, source: str):
    page.get_by_role("tab", name="Corpus").click()
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.locator("#upload-viewpoint textarea, #upload-viewpoint input").first.fill(viewpoint)
    page.locator("#upload-source textarea, #upload-source input").first.fill(source)
    page.locator("#add").click()
    page.locator("#report").get_by_text("added (1)").wait_for(timeout=180_000)
    leftovers = [p for p in server.uploads.rglob("*") if p.is_file() and p.name.endswith(path.suffix)]
    assert leftovers == [], "uploaded files must be removed once indexed"
    articles = rag.Index(server.index).stats()["articles"]
    assert f"{articles} articles" in page.locator("#stats").inner_text()
    page.get_by_role("tab", name="Ask").click()


def test_first_start_builds_the_seed_index(server):
    assert any("building it from" in line for line in server.log)
    assert sorted(rag.Index(server.index).stats()["viewpoints"]) == SEED_VIEWPOINTS


def test_ask_shows_viewpoints_side_by_side_and_a_citation_opens_the_article(page, step, server):
    with step("ask"):
        reply = ask(page, "What did Putin agree to on the ceasefire?")
        headings = reply.locator("section.vp h4").all_inner_texts()
        assert sorted(headings) == sorted(rag.Index(server.index).stats()["viewpoints"])
        for viewpoint in SEED_VIEWPOINTS:
            assert column(reply, viewpoint).locator("blockquote").first.is_visible()
            assert column(reply, viewpoint).locator("a.cite").count() >= 1
    with step("side-by-side"):
        a, b = (column(reply, v).bounding_box() for v in SEED_VIEWPOINTS)
        assert abs(a["y"] - b["y"]) < 5 and abs(a["x"] - b["x"]) > 100
    with step("citation"):
        quote = column(reply, SEED_VIEWPOINTS[0]).locator("blockquote").first.inner_text().strip("“”")
        title = column(reply, SEED_VIEWPOINTS[0]).locator("a.cite").first.inner_text()
        mark = open_citation(page, column(reply, SEED_VIEWPOINTS[0]).locator("a.cite").first)
        assert mark.inner_text() == quote
        assert page.locator("#article h3").inner_text() == title
    with step("narrow-screen"):
        page.set_viewport_size({"width": 480, "height": 900})
        a, b = (column(reply, v).bounding_box() for v in SEED_VIEWPOINTS)
        assert abs(a["x"] - b["x"]) < 5 and abs(a["y"] - b["y"]) > 20


def test_each_question_shows_in_full_with_its_coverage_line_above_its_answer(page, step, server):
    ix = rag.Index(server.index)
    long_question = ("What exactly did Vladimir Putin agree to during the phone call about the ceasefire, "
                     "and what did he refuse to give Donald Trump in return?")
    for n, question in enumerate(["What did Putin agree to on the ceasefire?", long_question]):
        with step(f"ask-{n}"):
            reply = ask(page, question)
            turn = page.locator("#chat .turn").nth(n)
            asked, coverage = turn.locator(".asked"), turn.locator(".coverage")
            assert asked.inner_text() == question  # in full, not cut
            expected = app_render.coverage_line(ix.ask(question, history=[] if n == 0 else
                                                       ["What did Putin agree to on the ceasefire?"]))
            assert coverage.inner_text() == expected
            assert re.fullmatch(r"(\d of \d viewpoints? address(es)? this; .+ (is|are) silent|"
                                r"Both viewpoints address this|Neither viewpoint addresses this)", expected)
        with step(f"above-{n}"):
            q, c, grid = (x.bounding_box() for x in (asked, coverage, reply))
            assert q["y"] + q["height"] <= c["y"] + 1 and c["y"] + c["height"] <= grid["y"] + 1
            assert shown_whole(page, asked) and shown_whole(page, coverage)  # the new question is in view
            assert page.locator("#chat").get_by_text("Conversation", exact=True).count() == 0


def test_the_corpus_tab_charts_articles_per_viewpoint_over_time(browser, allsides_server):
    ix = rag.Index(allsides_server.index)
    counts, unit, undated = app_render.timeline(ix.snapshot().articles)
    page = open_page(browser, allsides_server.url)
    try:
        page.get_by_role("tab", name="Corpus").click()
        chart = page.locator("#timeline svg")
        chart.first.wait_for()
        page.wait_for_function("document.querySelectorAll('#timeline svg .mark-rect path').length > 0")
        labels = page.evaluate("[...document.querySelectorAll('#timeline svg text')].map(t => t.textContent)")
        assert {"left", "center", "right"} <= set(labels)  # the legend
        assert unit == "year" and {"2012", "2016"} <= set(labels)  # the periods on the x axis
        bars = page.locator("#timeline svg .mark-rect path").count()
        assert bars == len(counts) == 3 * len(set(counts["period"]))  # one per (year, side), empty ones too
        assert ix.stats()["articles"] - undated == counts["articles"].sum() > 200
        assert f"{undated} of {ix.stats()['articles']} articles have no readable date" in \
            page.locator("#timeline").inner_text()
    except BaseException:
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / "corpus-chart.png"), full_page=True)
        raise
    finally:
        page.close()


def test_a_follow_up_uses_the_conversation(page, step):
    with step("first"):
        ask(page, "Did Russia make big concessions?")
    with step("follow-up"):
        reply = ask(page, "And what did he refuse?")
        note = page.locator("#chat .answer-note").last
        assert "read with the conversation" in note.inner_text()
        assert "concessions" in note.inner_text().lower()
        assert reply.locator("section.vp").count() >= len(SEED_VIEWPOINTS)


def test_an_uploaded_article_is_indexed_and_cited(page, step, server, tmp_path):
    article = tmp_path / "ferry strike.md"
    article.write_text("Baltic ferry crews strike\n\nThe Baltic ferry crews went on strike over unpaid "
                       "overtime on Monday. Ferry crews say the night shifts on the Baltic routes are "
                       "unsafe. The ferry operator offered a bonus that the crews refused.\n")
    with step("upload"):
        upload(page, server, article, "maritime", "Harbour Times")
    with step("ask"):
        reply = ask(page, "Why did the Baltic ferry crews strike?")
        links = column(reply, "maritime").locator("a.cite")
        assert links.count() >= 1 and links.first.inner_text() == "Baltic ferry crews strike"
    with step("citation"):
        mark = open_citation(page, links.first)
        assert mark.inner_text() in article.read_text()
        assert "Harbour Times" in page.locator("#article .meta").inner_text()


def test_a_hostile_article_renders_as_text_and_runs_nothing(page, step, server, tmp_path):
    dialogs, requests = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    article = tmp_path / "lanterns<img src=x onerror=alert(1)>.md"
    article.write_text(HOSTILE)
    with step("upload"):
        upload(page, server, article, "lantern-side", "Evil Wire")
    with step("ask"):
        reply = ask(page, "What about the harbour lanterns of Tallinn?")
        links = column(reply, "lantern-side").locator("a.cite")
        assert links.count() >= 1
        open_citation(page, links.first)
    with step("inert"):
        shown = page.locator("#article .article-text").inner_text()
        for literal in ("<script>window.__pwned = 1</script>", "onerror=", "${alert(3)}",
                        "javascript:alert(4)", "http://evil.example/lantern.png"):
            assert literal in shown
        page.wait_for_timeout(1000)  # give any injected handler the chance to fire
        assert page.evaluate("window.__pwned") is None
        assert dialogs == []
        assert not [u for u in requests if not u.startswith((server.url, "data:", "blob:"))]
        assert not [u for u in requests if u.rstrip("/").endswith("/x")]  # <img src=x>
        assert page.locator("#chat section.vp img, #article img, #report img").count() == 0
        assert page.locator('a[href^="javascript:"]').count() == 0


def test_the_readme_gradio_client_example_returns_the_contract_json(server):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    code = next((b for b in blocks if "gradio_client" in b), None)
    assert code, "the README has no gradio_client example"
    scope: dict = {}
    exec(code.replace("http://127.0.0.1:7860/", server.url), scope)  # noqa: S102 - our own README
    answer = scope["answer"]
    assert set(answer) >= {"question", "viewpoints"} and answer["viewpoints"]
    ix = rag.Index(server.index)
    for view in answer["viewpoints"]:
        assert set(view) >= {"viewpoint", "abstained", "answers"}
        for a in view["answers"]:
            assert set(a) >= {"text", "score", "doc_id", "title", "source", "start", "end", "passage"}
            assert a["text"] == ix.article(a["doc_id"]).text[a["start"]:a["end"]]


def test_the_app_on_milvus_builds_answers_cites_and_takes_an_upload(browser, milvus_server, tmp_path_factory):
    """`python app.py --store milvus://…` on an empty collection prefix: it builds the seeds
    into Milvus on first start, answers side by side, opens a citation, and indexes an upload
    into Milvus that the next question cites."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: `make browser` (or apt-get install chromium) installs it")
    store = f"{milvus_server}/app"
    server = Server(tmp_path_factory.mktemp("milvus-app"), index=store)
    page = None
    try:
        server.wait_ready()
        assert any("building it from" in line for line in server.log)
        assert sorted(rag.Index(store).stats()["viewpoints"]) == SEED_VIEWPOINTS
        page = open_page(browser, server.url)
        reply = ask(page, "What did Putin agree to on the ceasefire?")
        for viewpoint in SEED_VIEWPOINTS:
            assert column(reply, viewpoint).locator("blockquote").first.is_visible()
        quote = column(reply, SEED_VIEWPOINTS[0]).locator("blockquote").first.inner_text().strip("“”")
        assert open_citation(page, column(reply, SEED_VIEWPOINTS[0]).locator("a.cite").first).inner_text() == quote
        article = tmp_path_factory.mktemp("upload") / "ferry strike.md"
        article.write_text("Baltic ferry crews strike\n\nThe Baltic ferry crews went on strike over unpaid "
                           "overtime on Monday. The ferry operator offered a bonus that the crews refused.\n")
        upload(page, server, article, "maritime", "Harbour Times")
        assert rag.Index(store).article("ferry-strike").source == "Harbour Times"  # in Milvus, not a folder
        links = column(ask(page, "Why did the Baltic ferry crews strike?"), "maritime").locator("a.cite")
        assert links.count() >= 1 and links.first.inner_text() == "Baltic ferry crews strike"
    except BaseException:
        if page is not None:
            OUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT / "milvus-app.png"), full_page=True)
        raise
    finally:
        if page is not None:
            page.close()
        server.stop()
