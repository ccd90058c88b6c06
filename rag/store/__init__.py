"""Where an index lives: a folder on this machine (local.py over index.py and its
neighbours, the default) or a Milvus server or cluster (milvus.py). Both offer the
engine the same methods: retrieve, article, articles, stats, check, write
(``engine.open_store`` picks one from what the user named)."""
