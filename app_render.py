"""HTML for the app: each question with its coverage above its viewpoints' quotes side
by side, the article with the quote marked, upload reports, index stats and the corpus's
articles per viewpoint over time. Pure functions of ``rag``'s records.

Article text, titles, ids and file names are untrusted: every one passes through
``esc`` before it becomes HTML, and the HTML only ever becomes a component's value
(never an ``html_template``, where ``${...}`` would run).
"""
from __future__ import annotations

import html
import re
from collections import Counter
from typing import Iterable, NamedTuple, Sequence
from urllib.parse import quote

import pandas as pd

import rag
from rag.dates import day_of

SHOWN_IDS = 20  # ids listed per line of an upload report
TIMELINE_SERIES = 8  # viewpoints drawn in the corpus chart; the rest are summed as "other"
MONTHLY_UP_TO = 36  # the chart counts per month when the dates span at most this many months, else per year


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


def names(items: Sequence[str]) -> str:
    """
    >>> names(["left"]), names(["left", "right"]), names(["a", "b", "c"])
    ('left', 'left and right', 'a, b and c')
    """
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def coverage_line(answer: rag.Answer) -> str:
    """One line: how many of the listed viewpoints address the question, and who is silent.

    >>> from rag.types import Coverage
    >>> coverage_line(rag.Answer("q", (), coverage=Coverage(("left", "center"), ("right",))))
    '2 of 3 viewpoints address this; right is silent'
    >>> coverage_line(rag.Answer("q", (), coverage=Coverage((), ("left", "right"))))
    'Neither viewpoint addresses this'
    >>> coverage_line(rag.Answer("q", (), coverage=Coverage(("a", "b", "c"), ())))
    'All 3 viewpoints address this'
    """
    addressed, silent = answer.coverage.addressed, answer.coverage.silent
    total = len(addressed) + len(silent)
    if not silent:
        line = {1: "The one viewpoint addresses this", 2: "Both viewpoints address this"}.get(
            total, f"All {total} viewpoints address this")
    elif not addressed:
        line = {1: "The one viewpoint does not address this", 2: "Neither viewpoint addresses this"}.get(
            total, f"None of the {total} viewpoints addresses this")
    else:
        verb = "addresses" if len(addressed) == 1 else "address"
        line = (f"{len(addressed)} of {total} viewpoints {verb} this; "
                f"{names(silent)} {'is' if len(silent) == 1 else 'are'} silent")
    if answer.more_viewpoints:
        line += f" ({answer.more_viewpoints} more viewpoints not shown)"
    return line


def render_turn(answer: rag.Answer) -> str:
    """One chat turn: the question in full and its coverage line, above its columns."""
    head = f'<h3 class="asked">{esc(answer.question)}</h3>'
    if answer.viewpoints:
        head += f'<p class="coverage">{esc(coverage_line(answer))}</p>'
    return f'<div class="turn">{head}{render_answer(answer)}</div>'


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
    views = " · ".join(f"{esc(k)} {v}" for k, v in list(stats.get("viewpoints", {}).items())[:30])
    return (f'<div class="stats"><p><b>{stats["articles"]}</b> articles, {stats["chunks"]} chunks, '
            f'{stats["sentences"]} sentences · index version {esc(stats["version"])} · '
            f'{esc(stats["model"])}</p><p class="by-viewpoint">By viewpoint: {views}</p></div>')


def month_of(date: str) -> tuple[int, int] | None:
    """(year, month) of an article's date as sources write it, or None when unreadable.

    >>> month_of("2012-05-25"), month_of("2019-03-04T10:00:00Z"), month_of("12/29/17"), month_of("3/4/2009")
    ((2012, 5), (2019, 3), (2017, 12), (2009, 3))
    >>> month_of(""), month_of("yesterday"), month_of("13/45/17")
    (None, None, None)
    """
    day = day_of(date)
    return (day.year, day.month) if day else None


class Timeline(NamedTuple):
    counts: pd.DataFrame  # columns period, viewpoint, articles
    unit: str  # "month" or "year": what a period is
    undated: int  # articles left out: no readable date


def timeline(articles: Iterable[rag.Article], by: str = "viewpoint") -> Timeline:
    """Articles per viewpoint per month (per year when the dates span more than three
    years), every period listed so a thin one shows as a gap; and how many are undated.

    >>> arts = [rag.Article(str(i), "t", viewpoint=v, date=d) for i, (v, d) in
    ...         enumerate([("left", "2019-01-02"), ("right", "3/9/19"), ("left", "")])]
    >>> frame, unit, undated = timeline(arts)
    >>> unit, undated, frame.to_dict("records")[:2]
    ('month', 1, [{'period': '2019-01', 'viewpoint': 'left', 'articles': 1}, {'period': '2019-01', 'viewpoint': 'right', 'articles': 0}])
    >>> sorted(set(frame["period"])), int(frame["articles"].sum())
    (['2019-01', '2019-02', '2019-03'], 2)
    """
    dated, undated = [], 0
    for article in articles:
        month = month_of(article.date)
        if month is None:
            undated += 1
        else:
            dated.append((month, article.group(by)))
    if not dated:
        empty = {"period": pd.Series([], dtype=str), "viewpoint": pd.Series([], dtype=str),
                 "articles": pd.Series([], dtype=int)}
        return Timeline(pd.DataFrame(empty), "month", undated)
    kept = {label for label, _ in Counter(label for _, label in dated).most_common(TIMELINE_SERIES)}
    first, last = min(m for m, _ in dated), max(m for m, _ in dated)
    monthly = (last[0] - first[0]) * 12 + last[1] - first[1] < MONTHLY_UP_TO
    counts = Counter((f"{y}-{m:02d}" if monthly else str(y), label if label in kept else "other")
                     for (y, m), label in dated)
    if monthly:
        periods = [f"{y}-{m:02d}" for y in range(first[0], last[0] + 1) for m in range(1, 13)
                   if first <= (y, m) <= last]
    else:
        periods = [str(y) for y in range(first[0], last[0] + 1)]
    series = sorted(kept) + (["other"] if any(label == "other" for _, label in counts) else [])
    rows = [(p, s, counts.get((p, s), 0)) for p in periods for s in series]
    return Timeline(pd.DataFrame(rows, columns=["period", "viewpoint", "articles"]),
                    "month" if monthly else "year", undated)


# .asked keeps clear of the chat's copy/share/clear buttons, which float over its top right corner
CSS = """
.turn .asked { margin: 0 4.5rem .15rem 0; font-size: 1.1em; font-weight: 600; }
.turn .coverage { margin: 0 0 .6rem; font-size: .95em; }
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
