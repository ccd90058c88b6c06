"""Where an index lives: a folder on this machine (local.py over index.py and its
neighbours, the default) or a Milvus server or cluster (milvus.py, with what it stores
in milvus_schema.py). Both offer the engine the same methods: exists, require,
built_with, retrieve, article, articles, stats, check, write (``engine.open_store``
picks one from what the user named)."""
