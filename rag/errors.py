"""Domain errors. The CLI turns them into one line and a non-zero exit; the app into gr.Error."""


class RagError(Exception):
    """Base class: the message is one line that names the file or option at fault."""


class IngestError(RagError):
    """An input file or record could not be read as an article."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class IndexMissing(RagError):
    """No index at the given folder."""


class IndexCorrupt(RagError):
    """The index on disk fails its checks (checksum, counts, model)."""


class IndexOutdated(IndexCorrupt):
    """An index written by an older rag (format 1); ``Index.upgrade`` converts it."""


class IndexBusy(RagError):
    """Another writer holds the index lock."""


class EmptyCorpus(RagError):
    """A build found no article to index."""
