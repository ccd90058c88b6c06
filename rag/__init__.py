"""rag: question answering over news and opinion, one column per viewpoint,
every answer a verbatim quote with its citation.

    >>> import rag
    >>> ix = rag.open("index")                      # doctest: +SKIP
    >>> ix.ask("Did Russia make big concessions?")  # doctest: +SKIP
"""
from .engine import Index, build, open
from .errors import EmptyCorpus, IndexBusy, IndexCorrupt, IndexMissing, IndexOutdated, IngestError, RagError
from .retrieve import Filters
from .settings import Settings
from .types import Answer, Article, BuildReport, Quote, Rejected, ViewpointAnswer

__all__ = ["Index", "build", "open", "Settings", "Filters", "Answer", "Article", "BuildReport",
           "Quote", "Rejected", "ViewpointAnswer", "RagError", "IngestError", "IndexMissing",
           "IndexCorrupt", "IndexOutdated", "IndexBusy", "EmptyCorpus"]
