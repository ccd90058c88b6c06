"""Article dates as sources write them ("2012-05-25", "2019-03-04T10:00:00Z",
AllSides' "12/29/17"), read as calendar days so filters and charts compare days,
not strings ("12/29/17" > "2017-01-01" as text)."""
from __future__ import annotations

import datetime
import re

_FORMS = ((re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)"), "ymd"),
          (re.compile(r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})(?!\d)"), "mdy"))


def day_of(text: str) -> datetime.date | None:
    """The day a date string names, or None when it names none.

    >>> day_of("2012-05-25"), day_of("2019-03-04T10:00:00Z"), day_of("12/29/17"), day_of("3/4/2009")
    (datetime.date(2012, 5, 25), datetime.date(2019, 3, 4), datetime.date(2017, 12, 29), datetime.date(2009, 3, 4))
    >>> day_of(""), day_of("yesterday"), day_of("13/45/17")
    (None, None, None)
    """
    text = (text or "").strip()
    for pattern, order in _FORMS:
        found = pattern.match(text)
        if found:
            parts = dict(zip(order, map(int, found.groups())))
            year = parts["y"] + 2000 if parts["y"] < 100 else parts["y"]  # "12/29/17": the short form
            try:
                return datetime.date(year, parts["m"], parts["d"])
            except ValueError:
                return None
    return None


def iso_day(text: str) -> str:
    """``day_of`` as "YYYY-MM-DD", or "" (what the filters compare)."""
    day = day_of(text)
    return day.isoformat() if day else ""
