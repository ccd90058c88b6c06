"""Readable text of an HTML page: scripts, styles and page furniture dropped,
block elements on their own lines; the title and a few meta tags as metadata."""
from __future__ import annotations

import re
from html.parser import HTMLParser


class _Readable(HTMLParser):
    """Collects an HTML page's readable text; drops scripts, styles and page furniture."""

    SKIP = {"script", "style", "noscript", "nav", "header", "footer", "aside", "form",
            "svg", "iframe", "template", "button", "select"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section",
             "article", "blockquote", "pre", "hr", "title", "main", "figcaption"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.meta: dict[str, str] = {}
        self._skip = 0
        self._in: str = ""
        self._title: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "meta":
            key = (attrs.get("property") or attrs.get("name") or "").lower()
            mapping = {"og:title": "title", "og:site_name": "source", "author": "author",
                       "article:published_time": "date", "og:url": "url"}
            if key in mapping and attrs.get("content"):
                self.meta.setdefault(mapping[key], attrs["content"])
        if tag in ("title", "h1"):
            self._in = tag
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == self._in:
            self._in = ""
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._skip:
            return
        if self._in == "title":
            self._title.append(data)  # the page title is metadata, not body text
            return
        if self._in == "h1" and "h1" not in self.meta:
            self.meta["h1"] = data.strip()
        self.parts.append(data)


def html_to_text(html: str) -> tuple[str, dict[str, str]]:
    """Readable text and metadata of an HTML page.

    >>> html_to_text("<title>T</title><script>x()</script><p>Hello.</p>")
    ('Hello.', {'title': 'T'})
    """
    parser = _Readable()
    parser.feed(html)
    parser.close()
    meta = dict(parser.meta)
    title = meta.pop("h1", "") or "".join(parser._title).strip()
    meta.setdefault("title", title) if title else None
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    text = "\n".join(line for line in lines if line)
    return text, meta
