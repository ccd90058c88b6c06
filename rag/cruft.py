"""Cruft: the page furniture that scrapers leave in an article's text (video
captions with their running times, "Advertisement", share bars, "Read more"
links, newsletter boxes, photo credits), never worth quoting.

Each rule was counted on the 12k AllSides articles, held-out ones left out
(``bench/cruft_counts.py`` reprints the table and random hits to read): a rule
goes in only when it is common there and reads as furniture on any site, never
a phrase that also opens real sentences. Of 11,970 articles and 567,227
sentences, 30,165 sentences (5.3%) are cruft; articles / sentences per rule:

    video caption 555 / 3709     advertisement 1268 / 5185    copyright 976 / 1880
    media caption 208 / 452      continued below 689 / 691    updated at 124 / 161
    image caption 967 / 1558     share bar 253 / 258          click here 1050 / 1096
    slideshow 163 / 163          read more link 806 / 1311    contributed 984 / 986
    photo credit 541 / 1478      newsletter box 634 / 2075    follow on social 395 / 446
    photo gallery 181 / 8691                                  newsletter prompt 1652 / 1734

Cruft stays in the text and in the sentence spans (quotes stay verbatim, chunks
keep their token budgets, old indexes keep their meaning): the answer stage asks
``is_cruft`` and never offers such a sentence as a quote or a quote's lead.
"""
from __future__ import annotations

import re

from .types import Span

# A whole line of furniture: every sentence on it is cruft.
LINE_PATTERNS = {
    # "JUST WATCHED … Replay More Videos ... MUST WATCH … 03:42" (CNN); NPR's "Listen · 5:08"
    "video caption": r"^(JUST WATCHED|MUST WATCH)\b|(^|\s)\d{1,2}:\d{2}$",
    "media caption": r"^Media playback is unsupported",  # BBC
    "image caption": r"^(Image (copyright|caption)|Enlarge this image|toggle caption|Photographer:)\s",  # BBC, NPR
    "slideshow": r"^Slideshow \(\d+ Images?\)$",  # Reuters
    # a caption closed by its credit: "… in Houston. (AP Photo/David J. Phillip)", "(Photo: Pixabay)"
    "photo credit": r"\((AP|Reuters|AFP|Getty|EPA|[\w.\s'-]{0,40}) ?(photo|Photo|Images)\b[^()]{0,80}\)$",
    # a gallery's captions run together on one line: "Photos: Donald Trump's rise … Hide Caption 10 of 37"
    "photo gallery": r"^(Photo|Image|Picture|Photograph)s?( credit)?:\s|\bHide Caption \d+ of \d+\b",
    "advertisement": r"^(Advertisement|ADVERTISEMENT|AD)\b[\s:]*(Advertisement|Continue reading the main story)?$",
    "continued below": r"^(Story Continued Below|Continue Reading Below|Continue reading the main story)$",
    "share bar": r"^(share this( article| story)?|share all sharing options|listen to article|read or share this story)\b",
    "read more link": r"^(read more|related|more|see also|more on this|watch)\s*(:|\.\.\.|…|$)",
    "newsletter box": r"^Newsletter Sign Up\b|\bBy signing up,? you agree\b",
    "copyright": r"^(Copyright\b|COPYRIGHT\b|©)",
    # a time stamp or a live blog's short heading, never a sentence of news after it
    "updated at": r"^Updated( at|:)?\s+\d{1,2}:\d{2}\s*[ap]\.?m\b.{0,50}$",
}
# One sentence of furniture inside a line that may hold real ones ("… is a columnist. Follow him on Twitter.").
SENTENCE_PATTERNS = {
    "click here": r"^\W*click here\b",
    "contributed": r"\bcontributed to this report\W*$|^Contributing:",
    "follow on social": r"^\W*follow\b.{0,60}\b(twitter|facebook|instagram)\b|^\W*follow @",
    "newsletter prompt": r"\bsign(ing)? up\b.{0,80}\b(newsletter|inbox)|\b(newsletter|inbox)\b.{0,80}\bsign(ing)? up\b"
                         r"|\bdelivered (straight )?to your inbox\b|^\W*sign up( here| now| today)?\W*$",
}
# Case matters where furniture is set in its own case ("ADVERTISEMENT", "AD", "Image caption").
_ANY_CASE = {"share bar", "read more link"}
LINE_RULES = {name: re.compile(p, re.I if name in _ANY_CASE else 0) for name, p in LINE_PATTERNS.items()}
SENTENCE_RULES = {name: re.compile(p, re.I) for name, p in SENTENCE_PATTERNS.items()}


def line_of(text: str, span: Span) -> Span:
    """The line (text between newlines) that holds ``span``.

    >>> line_of("a\\nbc d\\ne", Span(2, 4))
    Span(start=2, end=6)
    """
    end = text.find("\n", span.end)
    return Span(text.rfind("\n", 0, span.start) + 1, len(text) if end < 0 else end)


def is_cruft(text: str, span: Span) -> bool:
    """Whether the sentence ``text[span.start:span.end]`` is page furniture.

    >>> t = "JUST WATCHED Calm in the South Replay More Videos ... MUST WATCH Calm 03:42\\n\\nThose areas held."
    >>> is_cruft(t, Span(0, 53)), is_cruft(t, Span(54, 75)), is_cruft(t, Span(77, 94))
    (True, True, False)
    """
    line = line_of(text, span)
    whole = text[line.start:line.end].strip()
    sentence = text[span.start:span.end]
    return (any(rule.search(whole) for rule in LINE_RULES.values())
            or any(rule.search(sentence) for rule in SENTENCE_RULES.values()))


def rules_matching(text: str, span: Span) -> list[str]:
    """The names of the rules that make a sentence cruft (for the counts)."""
    line = text[slice(*line_of(text, span))].strip()
    sentence = text[span.start:span.end]
    return ([name for name, rule in LINE_RULES.items() if rule.search(line)]
            + [name for name, rule in SENTENCE_RULES.items() if rule.search(sentence)])
