"""The browser app: ask a question, see what each viewpoint says side by side in
verbatim quotes, open any citation at the quoted span, and manage the corpus.

    python app.py                      # http://127.0.0.1:7860, builds index/ from seeds/ first
    python app.py --index my-index --host 0.0.0.0 --password s3cret
    python app.py --store milvus://127.0.0.1:19530   # a Milvus server instead of a folder

All answering is ``rag``'s; app_render.py turns its records into HTML (escaping
everything untrusted), this file checks input, calls the library and lays out the page.
"""
from __future__ import annotations

import argparse
import codecs
import datetime
import gzip
import hmac
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import gradio as gr

import rag
from app_render import CSS, render_article, render_report, render_stats, render_turn, timeline

ROOT = Path(__file__).resolve().parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
UPLOAD_TYPES = (".txt", ".md", ".html", ".htm", ".jsonl", ".jsonl.gz")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # per file, also enforced by Gradio at upload time
MAX_UNPACKED_BYTES = 200 * 1024 * 1024  # a .jsonl.gz may not inflate past this
EXAMPLES = ["How did the Trump-Putin phone call go?", "What did Putin agree to on the ceasefire?",
            "Is Putin playing for time?", "Did Russia make big concessions?"]

# ---- checks at the edge --------------------------------------------------------


def safe_name(name: str) -> str:
    """A file name reduced to letters, digits, ``.-_`` (it becomes the article id).

    >>> safe_name("../../etc/My File<script>.md")
    'My-File-script-.md'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).lstrip(".-")
    return name[-120:] or "upload"


def check_upload(path: Path, name: str) -> str | None:
    """Why an uploaded file is refused (by name, size and content), or None."""
    lower = name.lower()
    if not lower.endswith(UPLOAD_TYPES):
        return f"unsupported file type (upload {', '.join(UPLOAD_TYPES)})"
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        return f"file too large ({size} bytes; limit {MAX_UPLOAD_BYTES})"
    with open(path, "rb") as stream:
        head = stream.read(65536)
    if lower.endswith(".gz"):
        if not head.startswith(b"\x1f\x8b"):
            return "named .gz but is not gzip data"
        try:
            with gzip.open(path, "rb") as stream:
                head, total = stream.read(65536), 0
                for block in iter(lambda: stream.read(1 << 20), b""):
                    total += len(block)
                    if total > MAX_UNPACKED_BYTES:
                        return f"inflates past {MAX_UNPACKED_BYTES} bytes"
        except (OSError, EOFError) as err:
            return f"damaged gzip data ({err})"
    if not head.strip():
        return "empty file"
    if b"\x00" in head:
        return "binary data, not text"
    try:
        # a multi-byte character may be cut at the end of the sample, not at the end of the file
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 65536)
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if ".jsonl" in lower and not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "not JSON lines (each line must be a JSON object)"
    return None


def parse_date(value: str, label: str) -> str:
    value = (value or "").strip()
    if value:
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise gr.Error(f"{label}: expected a date like 2025-03-19, got {value!r}") from None
    return value


# ---- the app: handlers over one rag.Index -----------------------------------------


class App:
    """Event handlers; each calls the library and renders its result.

    Changing the corpus needs ``password`` whenever one is set, and is refused
    outright when served beyond localhost without one: the check runs inside
    the handlers because Gradio runs any event posted to its queue.
    """

    def __init__(self, ix: rag.Index, upload_dir: str | os.PathLike, password: str | None = None,
                 local: bool = True):
        self.ix = ix
        self.upload_dir = Path(upload_dir)
        self.password = password or None
        self.password_required = bool(self.password) or not local

    # questions

    def ask(self, question: str, chat: list, questions: list, group_by: str, sources: list,
            date_from: str, date_to: str):
        """Chat handler: returns the conversation, the questions so far, and "" for the textbox."""
        question = (question or "").strip()
        if not question:
            raise gr.Error("Type a question first.")
        filters = rag.Filters(sources=tuple(sources or ()), date_from=parse_date(date_from, "From"),
                              date_to=parse_date(date_to, "To"))
        try:
            answer = self.ix.ask(question, history=list(questions or []), group_by=group_by or None,
                                 filters=filters)
        except rag.RagError as err:
            raise gr.Error(str(err)) from None
        # One message per turn, the question at its head: a separate user bubble scrolled out of
        # sight (or sat under the chat's label) above a tall answer.
        chat = list(chat or []) + [{"role": "assistant", "content": render_turn(answer)}]
        return chat, list(questions or []) + [question], ""

    def ask_api(self, question: str, history: list[str] | None = None, k: int | None = None,
                group_by: str | None = None, sources: list[str] | None = None, date_from: str = "",
                date_to: str = "") -> dict:
        """The ``rag ask --json`` object for ``question`` (history: earlier questions, oldest first)."""
        filters = rag.Filters(sources=tuple(sources or ()), date_from=parse_date(date_from, "date_from"),
                              date_to=parse_date(date_to, "date_to"))
        try:
            return asdict(self.ix.ask(question, history=history or [], k=k or None,
                                      group_by=group_by or None, filters=filters))
        except rag.RagError as err:
            raise gr.Error(str(err)) from None

    def open_article(self, evt: gr.EventData) -> str:
        """A citation was clicked: the article, the quote marked. Event data is untrusted."""
        data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
        try:
            article = self.ix.article(str(data.get("doc_id", "")))
            start, end = int(data.get("start", -1)), int(data.get("end", -1))
        except (ValueError, TypeError):
            raise gr.Error("That citation is not valid.") from None
        except rag.RagError as err:
            raise gr.Error(f"{err} (was it removed?)") from None
        return render_article(article, start, end)

    # the corpus

    def corpus(self):
        """Stats, the articles-over-time chart, the remove list, the source filter and grouping
        choices, fresh from the index."""
        articles = self.ix.articles()
        counts, unit, undated = timeline(articles)
        chart = gr.BarPlot(counts, x_title=unit, caption=f"{undated} of {len(articles)} articles have no "
                           "readable date" if undated else None)
        listed = sorted(((f"{a.title or a.id} — {a.source or 'no source'} [{a.id}]", a.id) for a in articles),
                        key=lambda c: c[0].lower())
        sources = sorted({a.source for a in articles if a.source})
        fields = sorted({k for a in articles[:2000] for k, v in a.meta.items() if isinstance(v, str)})
        return (render_stats(self.ix.stats()), chart, gr.Dropdown(choices=listed, value=None),
                gr.Dropdown(choices=sources), gr.Dropdown(choices=["viewpoint", "source", *fields]))

    def _allow_change(self, given: str | None) -> None:
        if not self.password_required:
            return
        if not self.password:
            raise gr.Error("Corpus changes are off: the app is served beyond localhost without a password "
                           "(start it with --password or RAG_APP_PASSWORD).")
        if not hmac.compare_digest((given or "").encode(), self.password.encode()):
            raise gr.Error("Wrong password: the corpus was not changed.")

    def upload(self, files: list | None, viewpoint: str, source: str, password: str,
               progress=gr.Progress(track_tqdm=True)):
        """Index uploaded files (checked, copied to a private folder, removed afterwards)."""
        try:
            self._allow_change(password)
            if not files:
                raise gr.Error("Choose one or more files first.")
            batch = Path(tempfile.mkdtemp(prefix="indexing-", dir=self.upload_dir))
            try:
                rejected = self._stage(files, batch)
                progress(0, desc="indexing")
                report = None
                if any(batch.iterdir()):
                    defaults = {"viewpoint": (viewpoint or "").strip(), "source": (source or "").strip()}
                    try:
                        report = self.ix.add([batch], defaults=defaults, progress=True)
                    except rag.RagError as err:
                        raise gr.Error(str(err).replace(f"{batch}/", "")) from None
                    report = _relative(report, batch)
                return (render_report(report, rejected), *self.corpus())
            finally:
                shutil.rmtree(batch, ignore_errors=True)
        finally:
            for file in files or ():
                Path(_file_path(file)).unlink(missing_ok=True)  # Gradio's copy: never kept or served

    def _stage(self, files: list, batch: Path) -> list[rag.Rejected]:
        rejected = []
        for file in files:
            path = Path(_file_path(file))
            name = safe_name(path.name)
            reason = check_upload(path, name)
            if reason:
                rejected.append(rag.Rejected(name, reason))
                continue
            target, n = batch / name, 1
            while target.exists():  # two uploads with one name: both kept
                n += 1
                target = batch / f"{n}-{name}"
            shutil.copyfile(path, target)
        return rejected

    def remove(self, doc_id: str | None, password: str):
        self._allow_change(password)
        if not doc_id:
            raise gr.Error("Choose an article to remove.")
        try:
            report = self.ix.remove([doc_id])
        except rag.RagError as err:
            raise gr.Error(str(err)) from None
        return (render_report(report), *self.corpus())


def _file_path(file) -> str:
    return file if isinstance(file, str) else getattr(file, "path", None) or file.name


def _relative(report: rag.BuildReport, batch: Path) -> rag.BuildReport:
    """Rejected paths named by file (and line), not by the private upload folder."""
    from dataclasses import replace

    prefix = f"{batch}{os.sep}"
    return replace(report, rejected=tuple(rag.Rejected(r.path.removeprefix(prefix), r.reason)
                                          for r in report.rejected))


# ---- the page -------------------------------------------------------------------

# Citations live in chat messages; one document-level listener turns a click on
# any of them into this component's "click" event, carrying doc id and span.
VIEWER_JS = r"""
if (window.__ragCite) document.removeEventListener('click', window.__ragCite);
window.__ragCite = (e) => {
  const a = e.target.closest && e.target.closest('a.cite');
  const m = a && /^#cite\/([^/]*)\/(\d+)\/(\d+)$/.exec(a.getAttribute('href') || '');
  if (!m) return;
  e.preventDefault();
  trigger('click', {doc_id: decodeURIComponent(m[1]), start: Number(m[2]), end: Number(m[3])});
};
document.addEventListener('click', window.__ragCite);
watch('value', () => {
  const m = element.querySelector('mark.cited');
  if (m) m.scrollIntoView({block: 'center'});
});
"""

# After an answer: scroll the chat (not the page) so the new question sits at its top,
# the answer below it (Gradio's own autoscroll goes to the bottom of a tall answer).
SHOW_LAST_QUESTION = r"""
() => new Promise((done) => {
  let tries = 0;
  const go = () => {
    const asked = document.querySelectorAll('#chat .asked');
    const head = asked[asked.length - 1];
    let box = head && head.parentElement;
    while (box && !(box.scrollHeight > box.clientHeight + 1 && /auto|scroll/.test(getComputedStyle(box).overflowY)))
      box = box.parentElement;
    if (head && box && box !== document.documentElement) {
      box.scrollTop += head.getBoundingClientRect().top - box.getBoundingClientRect().top - 12;
      done();
    } else if (++tries < 40) setTimeout(go, 50);  // the new message may not be drawn yet
    else done();
  };
  go();
})
"""

# System fonts: the page loads nothing from other hosts (Gradio's default pulls Google Fonts).
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])

VIEWER_EMPTY = '<p class="silent">Click a citation to read the article, with the quote highlighted.</p>'


def build_demo(app: App) -> gr.Blocks:
    private = {"api_visibility": "private"}
    with gr.Blocks(title="Viewpoints", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## Viewpoints\nWhat each side says about your question, in its own words, with the source.")
        with gr.Tab("Ask"):
            with gr.Row():
                with gr.Column(scale=3, min_width=380):
                    chat = gr.Chatbot(label="Conversation", show_label=False, elem_id="chat", height=560,
                                      layout="panel", render_markdown=False, sanitize_html=True,
                                      latex_delimiters=[], feedback_options=None,
                                      group_consecutive_messages=False, autoscroll=False)
                    questions = gr.State([])
                    with gr.Row():
                        question = gr.Textbox(show_label=False, placeholder="Ask about the articles…",
                                              elem_id="question", scale=6, max_lines=3)
                        ask = gr.Button("Ask", variant="primary", elem_id="ask", scale=1, min_width=80)
                    clear = gr.Button("New conversation", size="sm")
                    gr.Examples(EXAMPLES, inputs=question, label="Try")
                    with gr.Accordion("Filters", open=False):
                        group_by = gr.Dropdown(["viewpoint", "source"], value="viewpoint", label="Columns by")
                        sources = gr.Dropdown([], multiselect=True, label="Only these sources")
                        with gr.Row():
                            date_from = gr.Textbox(label="From", placeholder="YYYY-MM-DD")
                            date_to = gr.Textbox(label="To", placeholder="YYYY-MM-DD")
                with gr.Column(scale=2, min_width=320):
                    viewer = gr.HTML(VIEWER_EMPTY, elem_id="article", js_on_load=VIEWER_JS, max_height=640,
                                     container=True, padding=True)
        with gr.Tab("Corpus"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(label=f"Upload articles ({', '.join(UPLOAD_TYPES)})", file_count="multiple",
                                    file_types=list(UPLOAD_TYPES), type="filepath", elem_id="upload")
                    with gr.Row():
                        up_viewpoint = gr.Textbox(label="Viewpoint", placeholder="for files that name none",
                                                  elem_id="upload-viewpoint")
                        up_source = gr.Textbox(label="Source", placeholder="for files that name none",
                                               elem_id="upload-source")
                    password = gr.Textbox(label="Password (needed to change the corpus)", type="password",
                                          visible=app.password_required, elem_id="password")
                    add = gr.Button("Index the files", variant="primary", elem_id="add")
                    report = gr.HTML(elem_id="report")
                with gr.Column():
                    stats = gr.HTML(elem_id="stats")
                    chart = gr.BarPlot(x="period", y="articles", color="viewpoint", y_aggregate="sum",
                                       title="Articles per viewpoint over time", y_title="articles",
                                       color_title="viewpoint", x_label_angle=-45, y_axis_format="d",
                                       elem_id="timeline", sort="x")
                    doc = gr.Dropdown([], label="Article", elem_id="remove-doc")
                    remove = gr.Button("Remove this article", variant="stop")
        gr.api(app.ask_api, api_name="ask")

        corpus_outputs = [stats, chart, doc, sources, group_by]
        inputs = [question, chat, questions, group_by, sources, date_from, date_to]
        for trigger in (ask.click, question.submit):
            trigger(app.ask, inputs, [chat, questions, question], **private).then(None, js=SHOW_LAST_QUESTION)
        clear.click(lambda: ([], [], VIEWER_EMPTY), None, [chat, questions, viewer], **private)
        viewer.click(app.open_article, None, viewer, **private)
        add.click(app.upload, [files, up_viewpoint, up_source, password], [report, *corpus_outputs], **private) \
            .then(lambda: None, None, files, **private)
        remove.click(app.remove, [doc, password], [report, *corpus_outputs], **private)
        demo.load(app.corpus, None, corpus_outputs, **private)
    return demo


# ---- start ------------------------------------------------------------------------


def open_index(folder: str | Path) -> rag.Index:
    """Open ``folder`` (or a ``milvus://`` store); on first run, build it from seeds/
    (with progress bars) first."""
    if not rag.Index(folder).exists():
        print(f"app: no index at {folder}: building it from {ROOT / 'seeds'} (first run only)…", file=sys.stderr)
        rag.build([ROOT / "seeds"], index=folder, progress=True)
    try:
        ix = rag.open(folder)
    except rag.IndexOutdated:  # written by an older version of this app: convert it, keeping every article
        print(f"app: {folder} was written by an older version: converting it (once)…", file=sys.stderr)
        rag.Index(folder).upgrade(progress=True)
        ix = rag.open(folder)
    ix.embedder.encode(["warm up"])  # load the model now, not on the first question
    return ix


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="The Viewpoints web app.")
    p.add_argument("--index", "--store", dest="index", default=os.environ.get("RAG_STORE") or "index",
                   help="index folder, or a Milvus server: milvus://HOST:PORT[/PREFIX] (default: $RAG_STORE, "
                   "else index; built from seeds/ if empty)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                   help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--password", default=os.environ.get("RAG_APP_PASSWORD"),
                   help="required to change the corpus (default: $RAG_APP_PASSWORD); without one, "
                   "corpus changes are refused when --host is not localhost")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio serves only its upload folder: make it a private one of ours.
    upload_dir = os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="rag-app-"))
    try:
        ix = open_index(args.index)
    except rag.RagError as err:
        sys.exit(f"app: error: {err}")
    app = App(ix, upload_dir, password=args.password, local=args.host in LOCAL_HOSTS)
    demo = build_demo(app)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=False, css=CSS, theme=THEME,
                        max_file_size=MAX_UPLOAD_BYTES, ssr_mode=False, show_error=True)


if __name__ == "__main__":
    main()
