"""HTML for the app: each viewpoint's quotes side by side, the article with the
quote marked, upload reports and index stats. Pure functions of ``rag``'s records.

Article text, titles, ids and file names are untrusted: every one passes through
``esc`` before it becomes HTML, and the HTML only ever becomes a component's value
(never an ``html_template``, where ``${...}`` would run).
"""
from __future__ import annotations

import html
import re
from typing import Sequence
from urllib.parse import quote

import rag

SHOWN_IDS = 20  # ids listed per line of an upload report



def esc(value: object) -> str:
    """HTML-escape text, quotes included; ``$`` and backticks too, so nothing can
    ever read as a template expression.

    >>> esc('<img src=x onerror="alert(1)"> ${x}')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &#36;{x}'
    """
    return html.escape(str(value), quote=True).replace("$", "&#36;").replace("`", "&#96;")


def confidence(score: float) -> str:
    """A reader's word for a quote's score, the calibrated probability that it
    answers the question (a side abstains below ``Settings.min_score``, 0.2).

    >>> [confidence(s) for s in (0.7, 0.35, 0.2, 0.05)]
    ['likely answers', 'may answer', 'possibly relevant', 'weak match']
    """
    if score >= 0.5:
        return "likely answers"
    if score >= 0.25:
        return "may answer"
    return "possibly relevant" if score >= 0.15 else "weak match"


def cite_href(q: rag.Quote) -> str:
    """The citation as a fragment link: the chat's HTML sanitizer keeps ``href``
    but drops ``data-*`` attributes.

    >>> cite_href(rag.Quote("x", 0.5, "a b/c", "", "", 3, 9, ""))
    '#cite/a%20b%2Fc/3/9'
    """
    return f"#cite/{quote(q.doc_id, safe='')}/{int(q.start)}/{int(q.end)}"


def render_quote(q: rag.Quote) -> str:
    meta = " · ".join(esc(x) for x in (q.source, q.date) if x)
    return (f'<li class="quote"><blockquote>“{esc(q.text)}”</blockquote><div class="cite-line">'
            f'<a class="cite" href="{esc(cite_href(q))}" title="Open the article at this quote">'
            f'{esc(q.title or q.doc_id)}</a>'
            f' <span class="meta">{meta}</span> <span class="conf" title="similarity {q.score:.2f}">'
            f'{confidence(q.score)} ({q.score:.2f})</span></div></li>')


def render_answer(answer: rag.Answer) -> str:
    """One column per viewpoint: quotes with citations, or a plain note for a silent side."""
    columns = []
    for view in answer.viewpoints:
        quotes = "".join(render_quote(q) for q in view.answers)
        if view.abstained:
            closest = (f'<details><summary>closest passages</summary><ol class="quotes">{quotes}</ol></details>'
                       if quotes else "")
            body = f'<p class="silent">Does not address this.</p>{closest}'
        else:
            body = f'<ol class="quotes">{quotes}</ol>'
        columns.append(f'<section class="vp{" vp-silent" if view.abstained else ""}">'
                       f'<h4>{esc(view.viewpoint)}</h4>{body}</section>')
    if not columns:
        return '<p class="silent">No article matches these filters.</p>'
    notes = []
    if answer.query and answer.query != answer.question:
        notes.append(f"read with the conversation as: “{esc(answer.query)}”")
    if answer.more_viewpoints:
        notes.append(f"{answer.more_viewpoints} more viewpoints not shown")
    note = f'<p class="answer-note">{"; ".join(notes)}</p>' if notes else ""
    return f'<div class="vp-grid">{"".join(columns)}</div>{note}'


def render_article(article: rag.Article, start: int = -1, end: int = -1) -> str:
    """The whole article, the span ``text[start:end]`` marked for scrolling into view."""
    text = article.text
    facts = [esc(x) for x in (article.source, article.viewpoint, article.date) if x]
    if re.match(r"https?://", article.url or ""):
        facts.append(f'<a href="{esc(article.url)}" target="_blank" rel="noopener noreferrer nofollow">'
                     f'original</a>')
    if 0 <= start < end <= len(text):
        body = f'{esc(text[:start])}<mark class="cited">{esc(text[start:end])}</mark>{esc(text[end:])}'
    else:
        body = esc(text)
    return (f'<article class="article"><h3>{esc(article.title or article.id)}</h3>'
            f'<p class="meta">{" · ".join(facts)}</p><div class="article-text">{body}</div></article>')


def _ids(label: str, ids: Sequence[str]) -> str:
    if not ids:
        return ""
    more = f" … and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return f"<li><b>{label} ({len(ids)}):</b> {esc(', '.join(ids[:SHOWN_IDS]))}{more}</li>"


def render_report(report: rag.BuildReport | None, rejected: Sequence[rag.Rejected] = ()) -> str:
    """What an upload or removal changed, and every rejected file with its reason."""
    lines = []
    if report is not None:
        lines += [_ids("added", report.added), _ids("changed", report.changed), _ids("removed", report.removed),
                  _ids("duplicates skipped", [f"{a} (same text as {b})" for a, b in report.duplicates])]
        lines.append(f"<li>{report.unchanged} unchanged; {report.embedded_articles} embedded; "
                     f"{report.chunks} chunks" + (f"; index version {esc(report.version)}" if report.version
                                                   else "; nothing written") + "</li>")
    for item in (*rejected, *(report.rejected if report else ())):
        lines.append(f'<li class="rejected"><b>rejected:</b> {esc(item.path)}: {esc(item.reason)}</li>')
    return f'<ul class="report">{"".join(lines)}</ul>'


def render_stats(stats: dict) -> str:
    views = "".join(f"<li>{esc(k)}: {v}</li>" for k, v in list(stats.get("viewpoints", {}).items())[:30])
    return (f'<div class="stats"><p><b>{stats["articles"]}</b> articles, {stats["chunks"]} chunks, '
            f'{stats["sentences"]} sentences · index version {esc(stats["version"])} · '
            f'{esc(stats["model"])}</p><p>By viewpoint:</p><ul>{views}</ul></div>')


CSS = """
.vp-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: .75rem; }
.vp { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .5rem .8rem; }
.vp h4 { margin: 0 0 .4rem; font-size: 1.05em; }
.vp-silent { opacity: .75; }
.vp .silent, .answer-note { font-style: italic; }
.vp ol.quotes { padding-left: 1.1rem; margin: 0; }
.vp blockquote { margin: 0 0 .2rem; padding: 0; border: 0; }
.cite-line { font-size: .85em; margin-bottom: .6rem; }
a.cite { color: var(--link-text-color); text-decoration: underline; cursor: pointer; }
.conf { color: var(--body-text-color-subdued); white-space: nowrap; }
#article .article-text { white-space: pre-wrap; line-height: 1.55; }
#article mark.cited { background: #ffd84d; color: #111; padding: 0 2px; border-radius: 2px; }
.report .rejected { color: var(--error-text-color); }
"""
