"""The porcelain through the Python API, on real repositories in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datakiln
from datakiln.errors import (
    AmbiguousExample,
    ExampleNotFound,
    NothingToCommit,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
    StateError,
    UnresolvedConflicts,
)
from tests.conftest import png, write_folder


def test_init_twice_and_missing_repo(tmp_path: Path) -> None:
    datakiln.Repo.init(tmp_path / "r")
    with pytest.raises(RepoExists):
        datakiln.Repo.init(tmp_path / "r")
    with pytest.raises(RepoNotFound, match="kiln init"):
        datakiln.Repo(tmp_path / "elsewhere")


def test_repo_found_from_subdirectory(repo: datakiln.Repo) -> None:
    sub = repo.root / "a" / "b"
    sub.mkdir(parents=True)
    assert datakiln.Repo(sub).root == repo.root


def test_import_folder_layouts(repo: datakiln.Repo, tmp_path: Path) -> None:
    src = write_folder(
        tmp_path / "photos",
        {
            "cat/1.png": png((1, 2, 3)),
            "cat/indoor/2.jpg": png((4, 5, 6), fmt="JPEG"),
            "dog/3.webp": png((7, 8, 9), fmt="WEBP"),
            "loose.png": png((10, 11, 12), mode="L"),
            ".DS_Store": b"junk that is hidden",
        },
    )
    rep = repo.import_folder(src)
    assert (rep.added, rep.present, rep.bad) == (4, 0, [])
    rows = {r["name"]: r for r in repo.ls()}
    assert rows["cat/1.png"]["label"] == "cat" and rows["cat/1.png"]["source"] == "import"
    assert rows["cat/indoor/2.jpg"]["meta"] == {"folder": "indoor"}
    assert rows["cat/indoor/2.jpg"]["format"] == "jpeg"
    assert rows["dog/3.webp"]["format"] == "webp"
    assert rows["loose.png"]["label"] is None and rows["loose.png"]["source"] is None
    assert all(r["split"] in ("train", "valid", "test") for r in rows.values())
    # Importing again adds nothing: ids are stable.
    again = repo.import_folder(src)
    assert (again.added, again.present) == (0, 4)


def test_split_folders_are_splits(repo: datakiln.Repo, tmp_path: Path) -> None:
    src = write_folder(
        tmp_path / "ds",
        {"train/cat/a.png": png((1, 1, 1)), "val/dog/b.png": png((2, 2, 2)), "test/c.png": png((3, 3, 3))},
    )
    repo.import_folder(src)
    rows = {r["name"]: r for r in repo.ls()}
    assert (rows["train/cat/a.png"]["split"], rows["train/cat/a.png"]["label"]) == ("train", "cat")
    assert (rows["val/dog/b.png"]["split"], rows["val/dog/b.png"]["label"]) == ("valid", "dog")
    assert (rows["test/c.png"]["split"], rows["test/c.png"]["label"]) == ("test", None)


def test_identical_bytes_are_stored_once_but_stay_two_examples(repo: datakiln.Repo, tmp_path: Path) -> None:
    same = png((9, 9, 9))
    src = write_folder(tmp_path / "p", {"a/x.png": same, "b/y.png": same})
    rep = repo.import_folder(src)
    assert rep.added == 2 and rep.new_blobs == 1
    rows = repo.ls()
    assert rows[0]["blob"] == rows[1]["blob"] and rows[0]["id"] != rows[1]["id"]


def test_manifest_csv_and_jsonl(repo: datakiln.Repo, tmp_path: Path) -> None:
    d = tmp_path / "m"
    write_folder(d, {"img/a.png": png((1, 0, 0)), "img/b.png": png((0, 1, 0)), "img/c.png": png((0, 0, 1))})
    (d / "labels.csv").write_text('path,label,split,camera\nimg/a.png,cat,test,"canon, eos"\nimg/b.png,,train,\n')
    (d / "more.jsonl").write_text(
        json.dumps({"path": "img/c.png", "label": "dog", "camera": "sony", "iso": 100}) + "\n"
    )
    repo.import_manifest(d / "labels.csv")
    repo.import_manifest(d / "more.jsonl")
    rows = {r["name"]: r for r in repo.ls()}
    assert rows["img/a.png"] | {} == rows["img/a.png"]
    assert (rows["img/a.png"]["label"], rows["img/a.png"]["split"], rows["img/a.png"]["meta"]) == (
        "cat",
        "test",
        {"camera": "canon, eos"},
    )
    assert rows["img/b.png"]["label"] is None and rows["img/b.png"]["split"] == "train"
    assert rows["img/c.png"]["meta"] == {"camera": "sony", "iso": "100"}


def test_label_commit_diff_and_sources(digits: datakiln.Repo) -> None:
    ids = digits.table().ids
    eid = digits.label(ids[0][:6], "seven", by="human:ann")
    assert eid == ids[0]
    st = digits.status()
    assert st["staged"] == {"added": 0, "removed": 0, "relabeled": 1}
    cid = digits.commit("fix one")
    d = digits.diff("HEAD~1", "HEAD")
    assert d["added"] == [] and d["removed"] == []
    assert [(r["id"], r["old"], r["new"], r["source"]) for r in d["relabeled"]] == [(ids[0], "0", "seven", "human:ann")]
    assert digits.resolve("HEAD") == cid
    assert digits.status()["staged"] == {"added": 0, "removed": 0, "relabeled": 0}
    with pytest.raises(NothingToCommit):
        digits.commit("again")


def test_label_back_to_head_value_unstages(digits: datakiln.Repo) -> None:
    eid = digits.table().ids[3]
    old, source, _ = digits.table().label_of(eid)
    digits.label(eid, "x", by=source)
    digits.label(eid, old, by=source)
    assert digits.status()["staged"]["relabeled"] == 0


def test_prefix_errors(digits: datakiln.Repo) -> None:
    with pytest.raises(ExampleNotFound, match="kiln ls"):
        digits.label("ffffffffffff0000", "1")
    with pytest.raises(ExampleNotFound, match="at least 4"):
        digits.label("ab", "1")
    ids = sorted(digits.table().ids)
    pairs = [(a, b) for a, b in zip(ids, ids[1:]) if a[:4] == b[:4]]
    assert pairs, "1,797 random ids share some 4-digit prefixes"
    with pytest.raises(AmbiguousExample, match="more digits"):
        digits.label(pairs[0][0][:4], "1")


def test_unlabel_and_rm(digits: datakiln.Repo) -> None:
    a, b = digits.table().ids[:2]
    digits.label(a, None)
    digits.rm([b[:8]])
    assert digits.status()["stats"] == {"examples": 1796, "labeled": 1795}
    digits.commit("unlabel one, drop one")
    t = digits.table("HEAD")
    assert b not in t and t.label_of(a)[0] is None
    assert digits.read_commit(digits.resolve("HEAD")).stats == {"examples": 1796, "labeled": 1795}
    assert digits.diff("HEAD~1", "HEAD")["removed"] == [b]


def test_reset_discards_stage(digits: datakiln.Repo) -> None:
    digits.label(digits.table().ids[0], "q")
    digits.reset()
    with pytest.raises(NothingToCommit):
        digits.commit("nothing")


def test_revisions(digits: datakiln.Repo) -> None:
    ids = digits.table().ids
    first = digits.resolve("HEAD")
    for i in range(3):
        digits.label(ids[i], f"l{i}")
        digits.commit(f"c{i}")
    assert digits.resolve("HEAD~3") == first
    assert digits.resolve("main~3") == first
    assert digits.resolve("HEAD^^^") == first
    assert digits.resolve(first[:7]) == first
    digits.tag("v1", "HEAD~1")
    assert digits.resolve("v1") == digits.resolve("HEAD~1")
    with pytest.raises(RevisionNotFound, match="not that long"):
        digits.resolve("HEAD~10")
    with pytest.raises(RevisionNotFound, match="did you mean main"):
        digits.resolve("mian")
    assert [c.message for c in digits.log(n=2)] == ["c2", "c1"]


def test_branch_checkout_and_fast_forward(digits: datakiln.Repo) -> None:
    eid = digits.table().ids[0]
    digits.checkout("feature", create=True)
    digits.label(eid, "f")
    digits.commit("on feature")
    digits.checkout("main")
    assert digits.table().label_of(eid)[0] == "0"
    res = digits.merge("feature")
    assert res["result"] == "fast-forward"
    assert digits.table().label_of(eid)[0] == "f"
    digits.delete_branch("feature")
    assert "feature" not in digits.branches()


def _diverge(
    r: datakiln.Repo, ours: dict[int, str | None], theirs: dict[int, str | None], rm_theirs: list[int] = ()
) -> list[str]:
    ids = r.table().ids
    r.checkout("other", create=True)
    for i, lab in theirs.items():
        r.label(ids[i], lab)
    if rm_theirs:
        r.rm([ids[i] for i in rm_theirs])
    r.commit("theirs")
    r.checkout("main")
    for i, lab in ours.items():
        r.label(ids[i], lab)
    r.commit("ours")
    return ids


def test_merge_different_examples_never_conflict(digits: datakiln.Repo) -> None:
    ids = _diverge(digits, {0: "a", 1: "b"}, {2: "c", 3: "d"}, rm_theirs=[4])
    res = digits.merge("other")
    assert res["result"] == "merged" and res["conflicts"] == []
    t = digits.table("HEAD")
    assert [t.label_of(ids[i])[0] for i in range(4)] == ["a", "b", "c", "d"]
    assert ids[4] not in t
    head = digits.read_commit(digits.resolve("HEAD"))
    assert len(head.parents) == 2 and head.stats["examples"] == 1796


def test_merge_conflict_listed_and_resolved_by_label(digits: datakiln.Repo) -> None:
    ids = _diverge(digits, {0: "ours", 1: "same"}, {0: "theirs", 1: "same", 2: "t"})
    res = digits.merge("other")
    assert res["result"] == "conflicts"
    assert [c["id"] for c in res["conflicts"]] == [ids[0]]
    c = res["conflicts"][0]
    assert (c["base"]["label"], c["ours"]["label"], c["theirs"]["label"]) == ("0", "ours", "theirs")
    with pytest.raises(UnresolvedConflicts, match="kiln merge --ours"):
        digits.commit("merge")
    assert digits.status()["merge"]["conflicts"][0]["id"] == ids[0]
    digits.label(ids[0], "decided")
    digits.commit("merge other")
    t = digits.table("HEAD")
    assert [t.label_of(ids[i])[0] for i in range(3)] == ["decided", "same", "t"]
    assert len(digits.read_commit(digits.resolve("HEAD")).parents) == 2


@pytest.mark.parametrize("side,expected", [("ours", "ours"), ("theirs", "theirs")])
def test_merge_conflict_resolved_by_side(digits: datakiln.Repo, side: str, expected: str) -> None:
    ids = _diverge(digits, {0: "ours"}, {0: "theirs", 5: "five"})
    assert digits.merge("other")["result"] == "conflicts"
    assert digits.resolve_conflicts(side) == [ids[0]]
    digits.commit("merge")
    t = digits.table("HEAD")
    assert t.label_of(ids[0])[0] == expected and t.label_of(ids[5])[0] == "five"


def test_merge_with_strategy_in_one_step(digits: datakiln.Repo) -> None:
    ids = _diverge(digits, {0: "ours"}, {0: "theirs"})
    res = digits.merge("other", strategy="theirs")
    assert res["result"] == "merged"
    assert digits.table("HEAD").label_of(ids[0])[0] == "theirs"


def test_merge_remove_versus_relabel_conflicts(digits: datakiln.Repo) -> None:
    ids = _diverge(digits, {7: "relabelled"}, {}, rm_theirs=[7])
    res = digits.merge("other")
    assert [c["id"] for c in res["conflicts"]] == [ids[7]]
    assert res["conflicts"][0]["theirs"] is None
    digits.resolve_conflicts("theirs")
    digits.commit("take the removal")
    assert ids[7] not in digits.table("HEAD")


def test_merge_brings_new_imports_from_a_branch(digits: datakiln.Repo, tmp_path: Path) -> None:
    digits.checkout("more", create=True)
    digits.import_folder(write_folder(tmp_path / "new", {"cat/a.png": png((1, 2, 3)), "cat/b.png": png((3, 2, 1))}))
    digits.commit("two cats")
    digits.rm([r["id"] for r in digits.ls(label="cat")][:1])
    digits.commit("drop one cat")
    digits.checkout("main")
    digits.label(digits.table().ids[0], "z")
    digits.commit("main moves on")
    assert digits.merge("more")["result"] == "merged"
    cats = digits.ls(label="cat")
    assert len(cats) == 1 and len(digits.table("HEAD")) == 1798


def test_merge_refuses_with_staged_changes(digits: datakiln.Repo) -> None:
    _diverge(digits, {0: "a"}, {1: "b"})
    digits.label(digits.table().ids[2], "staged")
    with pytest.raises(StateError, match="staged"):
        digits.merge("other")


def test_checkout_carries_stage_when_it_applies(digits: datakiln.Repo) -> None:
    eid = digits.table().ids[0]
    digits.create_branch("b")
    digits.label(eid, "carried")
    digits.checkout("b")
    digits.commit("on b")
    assert digits.table("b").label_of(eid)[0] == "carried"
    assert digits.table("main").label_of(eid)[0] == "0"


def test_detached_head_commit(digits: datakiln.Repo) -> None:
    first = digits.resolve("HEAD")
    digits.checkout(first[:8])
    assert digits.branch_name() is None
    digits.label(digits.table().ids[0], "d")
    cid = digits.commit("detached")
    assert digits.resolve("HEAD") == cid and digits.resolve("main") == first


def test_export_parquet_and_folder(digits: datakiln.Repo, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    digits.label(digits.table().ids[0], None)
    out = digits.export(tmp_path / "pq")
    tables = {p.stem: pq.read_table(p) for p in out.glob("*.parquet")}
    assert set(tables) == {"train", "valid", "test"}
    assert sum(t.num_rows for t in tables.values()) == 1797
    row = tables["train"].slice(0, 1).to_pylist()[0]
    assert row["image"]["bytes"][:8] == b"\x89PNG\r\n\x1a\n" and row["meta_ink"] in ("light", "medium", "heavy")
    folder = digits.export(tmp_path / "folder", format="folder")
    manifest = (folder / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1798 and manifest[0].startswith("path,label,split,id")
    assert any("/_unlabeled/" in line for line in manifest)
    # Re-import the exported folder into a new repository: every image comes back.
    r2 = datakiln.Repo.init(tmp_path / "r2")
    assert r2.import_manifest(folder / "manifest.csv").added == 1797
    with pytest.raises(datakiln.InputError, match="already exists"):
        digits.export(tmp_path / "folder", format="folder")


def test_read_image_round_trip(digits: datakiln.Repo) -> None:
    import io

    from PIL import Image

    data, fmt = digits.read_image(digits.table().ids[0])
    assert fmt == "png" and Image.open(io.BytesIO(data)).size == (8, 8)


def test_sample_ids_are_stable(tmp_path: Path) -> None:
    # Ids come from our own PNG encoder and the example's name, not from Pillow's version.
    r = datakiln.Repo.init(tmp_path / "r")
    r.import_sample("digits")
    row = r.ls()[0]
    assert row["name"] == "digits/0000.png" and row["label"] == "0"
    assert row["id"] == "fe7e6c4679fdfb79c4ecf1ee2b6996a5"


def test_label_edits_read_the_state_index_not_the_table(digits: datakiln.Repo) -> None:
    """`kiln label` at 100k took 0.3 s materializing the table to resolve one prefix: after a commit,
    a label edit reads HEAD's state index (derived from the parent's and the delta) and no segment."""
    ids = digits.table().ids
    digits.label(ids[0], "3")
    digits.commit("one")
    fresh = datakiln.Repo(digits.root)
    fresh.label(ids[1][:8], "4")
    fresh.label(ids[2][:8], None)
    assert len(fresh.segments._items) == 0, "a label edit decoded a segment: the table was materialized"
    assert fresh.status()["staged"]["relabeled"] == 2
    assert fresh.table().label_of(ids[1])[0] == "4" and fresh.table().label_of(ids[2])[0] is None


def test_the_index_path_agrees_with_the_table_path(digits: datakiln.Repo, tmp_path: Path) -> None:
    """A random walk of edits, removals, keeps, expectations, imports and commits: the stats and
    labels the index path leaves equal those of the materialized working table, always."""
    import random

    from datakiln.repo.index import StateIndex

    rng = random.Random(7)
    ids = list(digits.table().ids)
    for step in range(60):
        r = datakiln.Repo(digits.root)  # a new process's view: nothing cached in memory
        op = rng.random()
        eid = rng.choice(ids)
        try:
            if op < 0.45:
                r.label(eid[: rng.choice([6, 32])], rng.choice(["1", "2", None, "7"]))
            elif op < 0.55:
                current = r.table().label_of(eid)[0]
                r.label_many([(eid, "5")], expect={eid: current if rng.random() < 0.8 else "nope"})
            elif op < 0.62:
                r.rm([eid])
                ids.remove(eid)
            elif op < 0.67:
                src = write_folder(tmp_path / f"imp{step}", {f"c/{step}.png": png((step, 1, 2))})
                r.import_folder(src, jobs=1)
                ids += [e for e in r.table().ids if e not in ids]
            elif op < 0.85:
                r.commit(f"step {step}")
            else:
                r.keep([e for e in rng.sample(ids, 2) if r.table().label_of(e)[0] is not None] or [ids[0]])
        except (datakiln.LabelChanged, NothingToCommit, datakiln.InputError):
            pass
        work = r.table()
        assert r.status()["stats"] == work.stats(), f"step {step}"
        head = r.head()[1]
        if head:
            table = r.table_at(head)
            index = r.indexes.of_state(r.read_commit(head).state)
            assert isinstance(index, StateIndex) and len(index) == len(table)
            assert all(index.label_of(e) == table.label_of(e) for e in table.ids)


def test_merges_keep_keeps_and_earlier_settlements(digits: datakiln.Repo) -> None:
    """A keep made during a merge survives settling conflicts; settling one conflict, then
    another, does not undo the first (a removal taken from theirs stays removed)."""
    ids = digits.table().ids
    digits.create_branch("other")
    digits.label(ids[0], "1")
    digits.label(ids[1], "1")
    digits.commit("ours")
    digits.checkout("other")
    digits.rm([ids[0]])
    digits.label(ids[1], "2")
    digits.commit("theirs")
    digits.checkout("main")
    assert digits.merge("other")["result"] == "conflicts"
    kept_label = digits.table().label_of(ids[5])[0]
    digits.keep([ids[5]])
    assert digits.resolve_conflicts("theirs", [ids[0]]) == [ids[0]]
    assert ids[0] not in digits.table()
    digits.resolve_conflicts("ours", [ids[1]])
    assert ids[0] not in digits.table(), "the second settlement brought back the first's removal"
    assert digits.table().label_of(ids[1])[0] == "1"
    assert digits.kept().get(ids[5]) == kept_label, "a keep made during the merge was dropped"
    cid = digits.commit("merged")
    assert len(digits.read_commit(cid).parents) == 2 and digits.kept().get(ids[5]) == kept_label


def test_unstage_by_prefix_forgets_its_keep(digits: datakiln.Repo) -> None:
    eid = digits.table().ids[3]
    digits.label(eid, "9")
    digits.commit("nine")
    digits.keep([eid[:8]])
    assert digits.kept() == {eid: "9"}
    digits.unstage([eid[:8]])
    assert digits.kept() == {} and digits.staged_edits() == []
