"""Data debugging: planted label noise must be found, strategies and outlier finders must do
what they say, and the review commands work on a real build."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import datakiln
from datakiln.insight import active, labels, outliers, slices
from tests.conftest import kiln, kiln_json


def _planted(n: int = 3000, k: int = 5, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(noisy labels, pred_probs of a decent model of the true labels, mask of flipped rows)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.5
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    noisy = true.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    return noisy, p, flip


# ---- confident learning ------------------------------------------------------------------------


def test_confident_joint_on_a_hand_worked_case() -> None:
    # Three examples per class; the last labeled 0 is confidently a 1.
    pp = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.15, 0.85]])
    y = np.array([0, 0, 0, 1, 1, 1])
    # thresholds: class 0 = mean(0.9, 0.8, 0.1) = 0.6; class 1 = mean(0.8, 0.7, 0.85) = 0.783
    np.testing.assert_allclose(labels.per_class_thresholds(y, pp), [0.6, 0.78333333])
    raw = labels.confident_joint(y, pp, calibrate=False)
    # example 4 (0.3, 0.7) is below both thresholds, so it is not counted
    assert raw.tolist() == [[2, 1], [0, 2]]
    assert labels.find_label_issues(y, pp).tolist() == [False, False, True, False, False, False]


def test_planted_noise_is_found_and_clean_labels_are_left_alone() -> None:
    noisy, pp, flip = _planted()
    found = labels.find_label_issues(noisy, pp)
    tp = (found & flip).sum()
    assert tp / flip.sum() > 0.8 and tp / found.sum() > 0.8
    assert not (found & (pp.argmax(1) == noisy)).any()
    true = np.where(flip, -1, noisy)
    clean = labels.find_label_issues(noisy[~flip], pp[~flip])
    assert clean.mean() < 0.02
    ranked = labels.rank_issues(noisy, pp, found)
    conf = labels.self_confidence(noisy, pp)[ranked]
    assert (np.diff(conf) >= 0).all() and len(ranked) == found.sum()
    assert true.shape == noisy.shape


def test_scores_have_the_documented_direction() -> None:
    y = np.array([0, 0])
    pp = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert labels.self_confidence(y, pp).tolist() == pytest.approx([0.9, 0.2])
    m = labels.normalized_margin(y, pp)
    assert m[0] > 0.5 > m[1]


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(datakiln.InputError, match="class indices"):
        labels.find_label_issues(np.array([0, -1]), np.full((2, 2), 0.5))
    with pytest.raises(datakiln.InputError, match=r"\(N,\) and \(N, K\)"):
        labels.find_label_issues(np.array([0, 1, 1]), np.full((2, 2), 0.5))


# ---- query strategies ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", active.STRATEGIES)
def test_every_strategy_returns_distinct_candidates(strategy: str) -> None:
    rng = np.random.default_rng(1)
    pp = rng.dirichlet(np.ones(4), 300)
    emb = rng.standard_normal((300, 8))
    picks = active.query(pp, emb, 25, strategy=strategy, labeled_embeddings=emb[:5])
    assert len(picks) == 25 and len(set(picks.tolist())) == 25 and picks.max() < 300
    assert len(active.query(pp[:10], emb[:10], 25, strategy=strategy)) == 10


def test_uncertainty_picks_near_ties_and_diversity_spreads() -> None:
    pp = np.array([[0.98, 0.02], [0.51, 0.49], [0.7, 0.3], [0.5, 0.5]])
    assert active.query(pp, np.eye(4), 2, strategy="margin", labeled_embeddings=np.eye(4)).tolist() == [3, 1]
    # Two tight clusters: k-center takes one from each before a second from either.
    emb = np.array([[0, 0], [0.01, 0], [0, 0.01], [10, 10], [10.01, 10], [10, 10.01]], dtype=float)
    picks = active.k_center(emb, 2, reference=None, seed=0)
    assert {p // 3 for p in picks.tolist()} == {0, 1}
    # A cluster already labeled is not picked again.
    assert set(active.k_center(emb, 3, reference=emb[:3]).tolist()) == {3, 4, 5}
    # auto with near-duplicate uncertain candidates still spreads its batch.
    dup = np.vstack([np.zeros((20, 2)), np.ones((20, 2)) * 5])
    tie = np.tile([0.5, 0.5], (40, 1))
    batch = active.query(tie, dup, 4, strategy="auto", labeled_embeddings=np.array([[100.0, 100.0]]))
    assert {int(b) // 20 for b in batch} == {0, 1}
    alone = active.query(tie, dup, 4, strategy="margin", labeled_embeddings=dup[:1])
    assert {int(b) // 20 for b in alone} == {0}  # uncertainty alone takes near-duplicates
    with pytest.raises(datakiln.InputError, match="unknown strategy"):
        active.query(tie, dup, 2, strategy="smart")


def test_query_checks_its_arrays_and_needs_no_labeled_set_for_uncertainty() -> None:
    pp = np.array([[0.98, 0.02], [0.51, 0.49], [0.7, 0.3], [0.5, 0.5]])
    assert active.query(pp, np.eye(4), 2, strategy="margin").tolist() == [3, 1]
    with pytest.raises(datakiln.InputError, match="one row per candidate"):
        active.query(pp, np.eye(3), 2)
    with pytest.raises(datakiln.InputError, match="at least one"):
        active.query(pp, np.eye(4), 0)
    with pytest.raises(datakiln.InputError, match="softmax"):
        active.query(pp * 3, np.eye(4), 2)
    with pytest.raises(datakiln.InputError, match="width"):
        active.query(pp, np.eye(4), 2, labeled_embeddings=np.ones((2, 3)))
    with pytest.raises(datakiln.InputError, match="NaN"):
        labels.find_label_issues(np.array([0, 1]), np.array([[np.nan, np.nan], [0.5, 0.5]]))
    with pytest.raises(datakiln.InputError, match="integer class indices"):
        labels.find_label_issues(np.array(["a", "b"]), np.full((2, 2), 0.5))


# ---- outliers, duplicates, slices ---------------------------------------------------------------


def test_outliers_and_duplicates_are_found() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(0, 0.05, (200, 16)) + np.repeat(np.eye(16)[:2] * 3, 100, axis=0)
    emb[7] = -3  # unlike its class
    scores = outliers.outlier_scores(emb, np.repeat([0, 1], 100))
    assert int(scores.argmax()) == 7 and scores[7] > 2
    assert outliers.exact_duplicates(["a", "b", "a", "c", "b"]) == [[0, 2], [1, 4]]
    base = rng.standard_normal((500, 32))
    base[400] = base[3] + 0.001
    base[450] = base[9] * 2  # same direction: cosine 1
    i, j, sim = outliers.near_duplicates(base, threshold=0.99)
    assert set(zip(i.tolist(), j.tolist())) == {(3, 400), (9, 450)} and sim[0] >= sim[-1] >= 0.99
    many = np.repeat(rng.standard_normal((50, 32)), 40, axis=0) + rng.normal(0, 1e-3, (2000, 32))
    i, j, _ = outliers.near_duplicates(many)  # 50 groups of 40 copies: thousands of pairs, as arrays
    assert len(i) > 2000 and len(set(zip(i.tolist(), j.tolist()))) == len(i) and (i < j).all()


def test_weak_slice_is_reported_with_an_interval() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.integers(0, 3, n)
    pp = np.eye(3)[y] * 0.8 + 0.1
    camera = np.array(["a", "b", "c", "d"] * (n // 4), dtype=object)
    bad = np.flatnonzero(camera == "d")[:300]
    pp[bad] = np.eye(3)[(y[bad] + 1) % 3] * 0.8 + 0.1  # wrong on most of camera d
    found = slices.weak_slices(y, pp, {"camera": camera.tolist()})
    assert [s["slice"] for s in found] == ["camera=d"]
    s = found[0]
    assert s["low"] <= s["accuracy"] <= s["high"] and s["n"] == 500 and s["rest_accuracy"] == 1.0
    assert slices.weak_slices(y, np.eye(3)[y] * 0.8 + 0.1, {"camera": camera.tolist()}) == []


# ---- the review commands on a real build ----------------------------------------------------------


@pytest.fixture(scope="module")
def noisy(digits_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[datakiln.Repo, set[str]]:
    """The digits repo with 4% of labels flipped (and committed), some examples unlabeled, built."""
    root = tmp_path_factory.mktemp("noisy") / "repo"
    shutil.copytree(digits_template, root)
    (root / "kiln.toml").write_text("[train]\nepochs = 8\nfolds = 3\n")
    r = datakiln.Repo(root)
    t = r.table()
    rng = np.random.default_rng(0)
    ids = list(t.ids)
    flipped = {
        e: str((int(str(t.get(e, "label"))) + int(rng.integers(1, 10))) % 10)
        for e in rng.choice(ids, 72, replace=False)
    }
    unlabeled = [e for e in ids if e not in flipped][:60]
    r.commit("plant label errors", edits={**flipped, **{e: None for e in unlabeled}})
    datakiln.build(r, progress=False)
    return r, set(flipped)


def test_kiln_issues_finds_planted_errors(noisy: tuple[datakiln.Repo, set[str]]) -> None:
    r, flipped = noisy
    rows = kiln_json("issues", cwd=r.root)
    assert all(set(x) == {"id", "given", "suggested", "score", "rank"} for x in rows)
    found = {x["id"] for x in rows}
    assert len(found & flipped) >= 0.6 * len(flipped), (len(found & flipped), len(found))
    assert len(found & flipped) >= 0.6 * len(found)
    scores = [x["score"] for x in rows]
    assert scores == sorted(scores) and [x["rank"] for x in rows] == list(range(1, len(rows) + 1))
    assert "suspected label error" in kiln("issues", cwd=r.root).stdout


def test_accept_fixes_a_suspected_error(noisy: tuple[datakiln.Repo, set[str]], tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(noisy[0].root, root)
    r = datakiln.Repo(root)
    top = kiln_json("issues", cwd=root)[0]
    kiln("accept", top["id"][:10], cwd=root)
    label, source, _ = r.table().label_of(top["id"])
    assert label == top["suggested"] and source == "human:tester"
    assert top["id"] not in {x["id"] for x in kiln_json("issues", cwd=root)}
    bad = kiln("accept", r.table().ids[0], cwd=root, check=False)
    assert bad.returncode == 1 and "no suggestion" in bad.stderr


def test_seeded_labels_are_suggestions_not_given_labels(noisy: tuple[datakiln.Repo, set[str]], tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(noisy[0].root, root)
    r = datakiln.Repo(root)
    seeded = kiln_json("seed", "--min-confidence", "0.5", cwd=root)
    assert seeded and all(x["confidence"] >= 0.5 for x in seeded)
    build = datakiln.find_build(r).id
    for x in seeded:
        assert r.table().label_of(x["id"])[:2] == (x["label"], f"model:{build}")
    # A seeded label that disagrees with nothing is still not a "given" label for kiln issues.
    assert not {x["id"] for x in seeded} & {x["id"] for x in kiln_json("issues", cwd=root)}
    kiln("accept", seeded[0]["id"], cwd=root)
    assert r.table().label_of(seeded[0]["id"])[1] == "human:tester"


def test_queue_never_repeats_and_skips_labeled(noisy: tuple[datakiln.Repo, set[str]], tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(noisy[0].root, root)
    r = datakiln.Repo(root)
    unlabeled = {e for e in r.table().ids if r.table().get(e, "label") is None}
    first = kiln_json("queue", "--n", "20", cwd=root)
    second = kiln_json("queue", "--n", "20", "--strategy", "margin", cwd=root)
    ids1, ids2 = [x["id"] for x in first], [x["id"] for x in second]
    assert len(ids1) == 20 and len(set(ids1)) == 20 and set(ids1) <= unlabeled
    assert not set(ids1) & set(ids2) and set(ids2) <= unlabeled
    r.label(ids1[0], "3")  # labelled: leaves the queue, and is never proposed again
    assert [x["id"] for x in kiln_json("queue", "--show", cwd=root)] == ids1[1:] + ids2
    rest = kiln_json("queue", "--n", "100", cwd=root)
    assert {x["id"] for x in rest} == unlabeled - set(ids1) - set(ids2)
    assert "already in the queue" in kiln("queue", "--n", "5", cwd=root).stdout  # says why it adds nothing
    assert kiln("queue", "--clear", cwd=root).stdout.strip() == "the queue is empty"
    assert kiln_json("queue", "--show", cwd=root) == []


def test_cold_start_queue_without_labels(tmp_path: Path) -> None:
    from tests.conftest import png, write_folder

    r = datakiln.Repo.init(tmp_path / "r")
    layout = {f"imgs/{k}.png": png((k * 2, 255 - k * 2, (k * 37) % 255)) for k in range(60)}
    r.import_folder(write_folder(tmp_path / "src", layout) / "imgs")
    r.commit("unlabeled only")
    picks = kiln_json("queue", "--n", "8", cwd=r.root)
    assert len({x["id"] for x in picks}) == 8 and all(x["score"] is None for x in picks)
    more = kiln_json("queue", "--n", "8", cwd=r.root)
    assert not {x["id"] for x in more} & {x["id"] for x in picks}
    bad = kiln("accept", picks[0]["id"], cwd=r.root, check=False)
    assert bad.returncode == 1 and "no builds yet" in bad.stderr


def test_outliers_and_slices_json(noisy: tuple[datakiln.Repo, set[str]]) -> None:
    r = noisy[0]
    res = kiln_json("outliers", "-n", "5", cwd=r.root)
    assert set(res) == {"outliers", "outliers_total", "exact_duplicates", "near_duplicates", "near_duplicates_total"}
    assert all(o["score"] >= 2 for o in res["outliers"])
    assert len(res["outliers"]) == min(5, res["outliers_total"])
    assert all(set(d) == {"a", "b", "similarity", "conflict"} for d in res["near_duplicates"])
    rows = kiln_json("slices", cwd=r.root)
    assert isinstance(rows, list)
    assert all({"slice", "n", "accuracy", "low", "high"} <= set(s) for s in rows)


def test_cold_start_covers_every_kind_of_image(tmp_path: Path) -> None:
    """Six kinds of image, one of them busy and half the data: the first 12 picks span them all
    (k-center alone spends its picks on the busy, far-apart stripes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(200, 30, 30), (30, 160, 40), (40, 60, 200), (230, 220, 60), (120, 120, 120)]
    folder = tmp_path / "imgs"
    folder.mkdir()
    kinds = {}
    for k in range(150):
        kind = 5 if k < 75 else k % 5
        if kind == 5:  # stripes of random colours: far from each other, like a busy class
            px = np.repeat(rng.integers(0, 255, size=(1, 24, 3)), 24, axis=0).astype(np.uint8)
        else:
            px = np.clip(np.array(colours[kind]) + rng.normal(0, 12, size=(24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(folder / f"{k:03d}.png")
        kinds[f"{k:03d}.png"] = kind
    r = datakiln.Repo.init(tmp_path / "r")
    r.import_folder(folder)
    r.commit("unlabeled")
    names = {x["id"]: x["name"] for x in r.ls()}
    picks = kiln_json("queue", "--n", "12", cwd=r.root)
    assert {kinds[names[x["id"]]] for x in picks} == set(range(6))
