"""Every viewpoint is listed: with more than ``max_viewpoints``, the best ones and a count of the rest."""
import rag


def _corpus(folder, n):
    folder.mkdir()
    for i in range(n):
        # distinct texts: identical ones would be skipped as duplicates of the first
        topic = f"fishing quotas in the north sea (report {i})" if i < 3 else f"gardening matter number {i}"
        (folder / f"a{i:02d}.md").write_text(
            f"---\ntitle: Article {i}\nviewpoint: side-{i:02d}\n---\nThis piece discusses {topic}. "
            f"It says more about {topic} in a second sentence.\n", encoding="utf-8")


def test_more_than_twelve_viewpoints_lists_the_best_twelve_and_counts_the_rest(tmp_path, hash_embedder):
    _corpus(tmp_path / "corpus", 15)
    rag.build([tmp_path / "corpus"], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    answer = rag.open(tmp_path / "index", embedder=hash_embedder).ask("What about fishing quotas in the north sea?")
    listed = [v.viewpoint for v in answer.viewpoints]
    assert len(listed) == 12 and len(set(listed)) == 12 and answer.more_viewpoints == 3
    assert set(listed[:3]) == {"side-00", "side-01", "side-02"}  # the sides that talk about it come first


def test_few_viewpoints_are_all_listed(tmp_path, hash_embedder):
    _corpus(tmp_path / "corpus", 4)
    rag.build([tmp_path / "corpus"], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    answer = rag.open(tmp_path / "index", embedder=hash_embedder).ask("gardening")
    assert len(answer.viewpoints) == 4 and answer.more_viewpoints == 0


def test_grouping_is_reused_per_version_and_redone_for_a_new_one(tmp_path, hash_embedder):
    from rag.retrieve import group_chunks

    _corpus(tmp_path / "corpus", 4)
    rag.build([tmp_path / "corpus"], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    ix = rag.open(tmp_path / "index", embedder=hash_embedder)
    snap = ix.snapshot()
    assert group_chunks(snap, "viewpoint") is group_chunks(snap, "viewpoint")
    only = rag.Filters(sources=("nowhere",))
    assert group_chunks(snap, "viewpoint", only).labels == ()  # filters are part of the key
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "late.md").write_text("---\nviewpoint: side-late\n---\nA late piece on gardening.\n", encoding="utf-8")
    ix.add([extra], progress=False)
    assert "side-late" in {v.viewpoint for v in ix.ask("gardening").viewpoints}


def test_date_filters_compare_days_as_sources_write_them(tmp_path, hash_embedder):
    """AllSides writes "12/29/17": as text it sorts before "2017-..." and after "2016-...";
    as a day it is in December 2017. Undated articles fall outside any date range."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, date in (("short", "12/29/17"), ("iso", "2016-05-01"), ("undated", "")):
        (corpus / f"{name}.md").write_text(
            f"---\ntitle: {name}\nviewpoint: side-{name}\ndate: {date}\n---\n"
            f"The council voted on fishing quotas ({name} report). It said more on quotas.\n", encoding="utf-8")
    rag.build([corpus], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    ix = rag.open(tmp_path / "index", embedder=hash_embedder)

    def sides(**dates):
        return {v.viewpoint for v in ix.ask("fishing quotas", filters=rag.Filters(**dates)).viewpoints}

    assert sides(date_from="2017-01-01") == {"side-short"}
    assert sides(date_to="2017-01-01") == {"side-iso"}
    assert sides(date_from="2017-12-29", date_to="12/29/2017") == {"side-short"}
    assert sides() == {"side-short", "side-iso", "side-undated"}
