"""kiln build: the real trainer on CPU, the real package on disk, onnxruntime for prediction."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datakiln
from datakiln.compile.spec import DEFAULT_TOML, Spec, load_spec, parse_dict
from datakiln.errors import BadPackage, BadSpec, BuildNotFound, NotBuildable
from tests.conftest import ENV, kiln, kiln_json, png, write_folder

# Small enough for CI (a few seconds per build on one thread), big enough to learn digits.
QUICK = "[train]\nepochs = 4\nfolds = 2\n"


@pytest.fixture(scope="module")
def built(digits_template: Path, tmp_path_factory: pytest.TempPathFactory) -> datakiln.Repo:
    """A copy of the digits repository with one quick build; tests must not write to it."""
    root = tmp_path_factory.mktemp("built") / "repo"
    shutil.copytree(digits_template, root)
    (root / "kiln.toml").write_text(QUICK)
    r = datakiln.Repo(root)
    datakiln.build(r, progress=False)
    return r


def _digit_images(r: datakiln.Repo, n: int) -> tuple[list[bytes], list[str]]:
    t = r.table()
    ids = t.ids[:n]
    return [r.read_image(i)[0] for i in ids], [str(t.get(i, "label")) for i in ids]


def _image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


# ---- the spec ------------------------------------------------------------------------------


def test_default_toml_is_the_default_spec() -> None:
    import tomllib

    assert parse_dict(tomllib.loads(DEFAULT_TOML), "kiln.toml") == Spec()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[model]\nwidht = 1.0\n", "unknown key model.widht"),
        ("[modle]\n", "unknown section [modle]"),
        ('[model]\nwidth = "wide"\n', "model.width must be a number"),
        ("[train]\nepochs = 2.5\n", "train.epochs must be an integer"),
        ("[train]\nfolds = 1\n", "train.folds = 1 cannot hold anything out"),
        ("[train]\nthreads = 0\n", "train.threads = 0 is out of range"),
        ('[model]\narch = "resnet"\n', "model.arch must be one of cnn, mlp"),
        ("[input]\nsize = [8]\n", "input.size must be [height, width]"),
        ("[input]\nchannels = 2\n", "input.channels must be 1, 3"),
        ("[augment]\nflip = 1\n", "augment.flip must be true or false"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_bad_specs_are_refused_by_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "kiln.toml"
    path.write_text(toml)
    with pytest.raises(BadSpec, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        load_spec(path)
    assert str(path) in str(e.value)


def test_overrides_are_checked() -> None:
    assert Spec().with_overrides(**{"model.width": 0.5}).model.width == 0.5
    with pytest.raises(BadSpec, match="unknown spec key 'model.size'"):
        Spec().with_overrides(**{"model.size": 3})
    with pytest.raises(BadSpec, match="model.width = -1.0 is out of range"):
        Spec().with_overrides(**{"model.width": -1})


def test_init_writes_a_default_spec(tmp_path: Path) -> None:
    """`kiln init` writes a commented kiln.toml equal to the defaults (the library's Repo.init
    knows no build spec: the compiler owns it, and a repository without one builds the defaults)."""
    kiln("init", "r", cwd=tmp_path)
    assert load_spec(tmp_path / "r" / "kiln.toml") == Spec()
    assert not (datakiln.Repo.init(tmp_path / "bare").root / "kiln.toml").exists()


# ---- the build -----------------------------------------------------------------------------


def test_build_writes_a_verified_package_with_lineage(built: datakiln.Repo) -> None:
    b = datakiln.find_build(built)
    manifest = json.loads((b.package / "manifest.json").read_text())
    assert sorted(os.listdir(b.package)) == ["manifest.json", "model.onnx", "weights.safetensors"]
    assert manifest["lineage"]["commit"] == built.resolve("HEAD")
    assert manifest["lineage"]["repo"] == built.id
    assert manifest["lineage"]["spec_hash"] == load_spec(built.root / "kiln.toml").hash()
    assert manifest["classes"] == [str(d) for d in range(10)]
    assert manifest["input"]["size"] == [8, 8] and manifest["input"]["channels"] == 1
    assert manifest["spec"]["train"]["epochs"] == 4
    assert b.record["environment"]["threads"] == 1 and b.record["environment"]["cpu_capability"]
    assert manifest["metrics"]["test"]["accuracy"] > 0.8
    # No pickle anywhere in the package or the build.
    for f in b.dir.rglob("*"):
        if f.is_file():
            assert not f.read_bytes().startswith(b"\x80"), f"{f} looks like a pickle"


def test_every_example_has_out_of_sample_predictions(built: datakiln.Repo) -> None:
    b = datakiln.find_build(built)
    arr, ex = b.arrays(), b.examples()
    n = len(built.table())
    assert arr["pred_probs"].shape == (n, 10) and arr["embeddings"].shape[0] == n
    np.testing.assert_allclose(arr["pred_probs"].sum(1), 1.0, atol=1e-5)
    train = np.array(ex["splits"]) == "train"
    assert (arr["fold"][train] >= 0).all() and (arr["fold"][~train] == -1).all()
    assert set(np.unique(arr["fold"][train])) == {0, 1}
    # Out-of-sample accuracy on train is an honest estimate: close to the held-out splits.
    assert b.record["metrics"]["train_oos"]["accuracy"] > 0.8


def test_rebuild_is_cached_and_no_cache_is_bit_identical(built: datakiln.Repo, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(built.root, root)
    first = kiln_json("build", cwd=root)
    assert first["cached"] is True and first["id"] == datakiln.find_build(built).id
    assert set(first) >= {"id", "package", "cached", "metrics"}
    assert set(first["metrics"]["valid"]) >= {"accuracy"} and set(first["metrics"]["test"]) >= {"accuracy"}
    weights = Path(first["package"], "weights.safetensors").read_bytes()
    again = kiln_json("build", "--no-cache", cwd=root)  # a new process trains from scratch
    assert again["cached"] is False and again["id"] == first["id"]
    assert Path(again["package"], "weights.safetensors").read_bytes() == weights
    assert not list((root / ".kiln" / "tmp").glob("build-*"))


def test_spec_change_is_a_new_build(built: datakiln.Repo, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(built.root, root)
    r = datakiln.Repo(root)
    res = datakiln.build(r, spec=load_spec(root / "kiln.toml").with_overrides(**{"model.width": 0.5, "train.folds": 0}))
    assert not res.cached and res.build.id != datakiln.find_build(built).id
    assert res.build.record["spec"]["model"]["width"] == 0.5
    assert len(datakiln.builds(r)) == 2
    cmp = kiln_json("compare", datakiln.find_build(built).id[:8], res.build.id[:8], cwd=root)
    assert set(cmp["splits"]) == {"valid", "test", "train_oos"}
    # The new build has no cross-fitting, so only its held-out (valid and test) rows are compared.
    held_out = int((np.array(res.build.examples()["splits"]) != "train").sum())
    assert cmp["newly_wrong_count"] >= 0 and cmp["shared_examples"] == held_out


@pytest.mark.slow
def test_unlabeled_and_model_labels_are_not_trained_on(tmp_path: Path) -> None:
    r = datakiln.Repo.init(tmp_path / "r")
    (r.root / "kiln.toml").write_text("[train]\nepochs = 2\nfolds = 0\n[augment]\nshift = 0\n")
    layout = {}
    for k in range(24):
        layout[f"imgs/dark/{k}.png"] = png((10 + k, 10, 10))
        layout[f"imgs/light/{k}.png"] = png((240 - k, 240, 240))
    for k in range(6):
        layout[f"imgs/u{k}.png"] = png((120 + k, 120, 120))
    r.import_folder(write_folder(tmp_path / "src", layout) / "imgs")
    r.commit("import")
    seeded = [i for i in r.table().ids if r.table().get(i, "label") is None][0]
    r.label(seeded, "dark", by="model:abc")
    r.commit("seed one label")
    b = datakiln.build(r, progress=False).build
    arr, ex = b.arrays(), b.examples()
    assert b.record["metrics"]["unlabeled"] == 6  # the seeded one counts as unlabeled for training
    assert (arr["y"] == -1).sum() == 6
    assert ex["sources"][ex["ids"].index(seeded)] == "model:abc"
    assert arr["pred_probs"].shape == (len(ex["ids"]), 2)


def test_too_few_labels_is_a_clear_error(repo: datakiln.Repo, tmp_path: Path) -> None:
    repo.import_folder(
        write_folder(tmp_path / "src", {"imgs/cat/a.png": png(), "imgs/cat/b.png": png((1, 2, 3))}) / "imgs"
    )
    repo.commit("one class")
    with pytest.raises(NotBuildable, match="1 class"):
        datakiln.build(repo)
    assert not (repo.dir / "builds").exists()


@pytest.mark.slow
def test_trainer_learns_a_known_answer(tmp_path: Path) -> None:
    """Dark vs light squares: any working trainer gets them all right."""
    r = datakiln.Repo.init(tmp_path / "r")
    (r.root / "kiln.toml").write_text('[model]\narch = "mlp"\n[train]\nepochs = 8\nfolds = 0\n[augment]\nshift = 0\n')
    layout = {f"imgs/{'dark' if k % 2 else 'light'}/{k}.png": png((30 if k % 2 else 220,) * 3) for k in range(80)}
    layout.update(
        {f"imgs/{'dark' if k % 2 else 'light'}/n{k}.png": png((40 if k % 2 else 210, 35, 45)) for k in range(80)}
    )
    r.import_folder(write_folder(tmp_path / "src", layout) / "imgs")
    r.commit("import")
    m = datakiln.build(r, progress=False).build.record["metrics"]
    assert m["valid"]["accuracy"] == 1.0 or m["valid"]["n"] == 0
    assert m["train_oos"]["accuracy"] is None or m["train_oos"]["accuracy"] == 1.0


@pytest.mark.slow
def test_interrupt_leaves_no_half_build(digits_template: Path, tmp_path: Path) -> None:
    root = tmp_path / "r"
    shutil.copytree(digits_template, root)
    (root / "kiln.toml").write_text("[train]\nepochs = 200\nfolds = 0\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakiln", "build"], cwd=root, env=ENV, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not list((root / ".kiln" / "tmp").glob("build-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the training loop
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not list((root / ".kiln" / "tmp").glob("build-*"))
    assert not (root / ".kiln" / "builds").exists() or not any((root / ".kiln" / "builds").iterdir())


# ---- the package and prediction ------------------------------------------------------------


def test_onnx_matches_torch_on_the_sample(built: datakiln.Repo) -> None:
    import torch
    from safetensors.torch import load_file

    from datakiln.compile.models import Classifier

    b = datakiln.find_build(built)
    model = datakiln.load(str(b.package))
    images, _ = _digit_images(built, 300)
    x = np.stack([np.asarray(_image(d).convert("L"))[None] for d in images])
    x = x.astype(np.float32) / 255.0
    onnx_probs, _ = model.run(x)
    spec = load_spec(built.root / "kiln.toml")
    net = Classifier(spec.model, (1, 8, 8), 10, b.record["input"]["mean"], b.record["input"]["std"])
    net.load_state_dict(load_file(str(b.package / "weights.safetensors")))
    net.eval()
    with torch.no_grad():
        torch_probs = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4
    assert b.record["onnx_max_abs_diff"] < 1e-4


def test_predict_does_not_import_torch(built: datakiln.Repo, tmp_path: Path) -> None:
    images, labels = _digit_images(built, 20)
    paths = []
    for k, data in enumerate(images):
        (tmp_path / f"{k}.png").write_bytes(data)
        paths.append(str(tmp_path / f"{k}.png"))
    code = (
        "import sys, json, datakiln\n"
        f"m = datakiln.load({str(datakiln.find_build(built).package)!r})\n"
        f"p = m.predict({paths!r})\n"
        "print(json.dumps({'labels': p.labels, 'shape': list(p.probs.shape), 'torch': 'torch' in sys.modules}))\n"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    )
    assert out["torch"] is False and out["shape"] == [20, 10]
    assert sum(a == b for a, b in zip(out["labels"], labels)) >= 17


def test_predict_takes_paths_pil_images_and_arrays(built: datakiln.Repo, tmp_path: Path) -> None:
    images, _ = _digit_images(built, 3)
    (tmp_path / "a.png").write_bytes(images[0])
    with Image.open(tmp_path / "a.png") as f:
        im = f.copy()
    gray = np.asarray(im.convert("L"))
    rgb = np.asarray(im.convert("RGB"))
    model = datakiln.load(datakiln.find_build(built).id, repo=str(built.root))
    p = model.predict([str(tmp_path / "a.png"), tmp_path / "a.png", im, gray, rgb])
    assert len(set(p.labels)) == 1 and p.probs.shape == (5, 10)
    np.testing.assert_allclose(p.probs[0], p.probs[3], atol=1e-6)
    assert model.predict(gray).probs.shape == (1, 10)  # one (H, W) array is one image
    with pytest.raises(datakiln.BadImage, match="uint8"):
        model.predict([gray.astype(np.float32)])


def test_tampered_package_is_refused(built: datakiln.Repo, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(datakiln.find_build(built).package, pkg)
    data = bytearray((pkg / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (pkg / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BadPackage, match="weights.safetensors does not match the sha256"):
        datakiln.load(str(pkg))
    with pytest.raises(BadPackage, match="not a model package"):
        datakiln.load(str(tmp_path / "pkg" / "manifest.json"))


def test_archive_round_trip_and_hostile_archives(built: datakiln.Repo, tmp_path: Path) -> None:
    kiln("package", "-o", str(tmp_path / "d.kiln.zip"), cwd=built.root)
    kiln("package", "-o", str(tmp_path / "e.kiln.zip"), cwd=built.root)
    assert (tmp_path / "d.kiln.zip").read_bytes() == (tmp_path / "e.kiln.zip").read_bytes()
    images, _ = _digit_images(built, 5)
    arrays = [np.asarray(_image(d)) for d in images]
    a = datakiln.load(str(tmp_path / "d.kiln.zip")).predict(arrays)
    b = datakiln.load(str(datakiln.find_build(built).package)).predict(arrays)
    np.testing.assert_array_equal(a.probs, b.probs)
    with zipfile.ZipFile(tmp_path / "d.kiln.zip") as z, zipfile.ZipFile(tmp_path / "evil.zip", "w") as out:
        for name in z.namelist():
            out.writestr(name, z.read(name))
        out.writestr("../escape.txt", b"x")
    with pytest.raises(BadPackage, match="exactly"):
        datakiln.load(str(tmp_path / "evil.zip"))


def test_unknown_build_is_a_clear_error(built: datakiln.Repo) -> None:
    with pytest.raises(BuildNotFound, match="no build 'ffff'"):
        datakiln.find_build(built, "ffff")
    proc = kiln("report", "ffff", cwd=built.root, check=False)
    assert proc.returncode == 1 and "kiln builds" in proc.stderr


# ---- the CLI -------------------------------------------------------------------------------


def test_cli_builds_report_predict(built: datakiln.Repo, tmp_path: Path) -> None:
    rows = kiln_json("builds", cwd=built.root)
    assert len(rows) == 1 and rows[0]["id"] == datakiln.find_build(built).id
    rep = kiln_json("report", cwd=built.root)
    assert len(rep["confusion"]["matrix"]) == 10 and len(rep["per_class"]["classes"]) == 10
    assert all({"slice", "n", "accuracy", "low", "high"} <= set(s) for s in rep["slices"])
    text = kiln("report", cwd=built.root).stdout
    assert "confusion matrix" in text and "per class" in text
    images, labels = _digit_images(built, 4)
    for k, data in enumerate(images):
        (tmp_path / f"{k}.png").write_bytes(data)
    out = kiln_json(
        "predict", datakiln.find_build(built).id[:10], *[str(tmp_path / f"{k}.png") for k in range(4)], cwd=built.root
    )
    assert [set(o) >= {"label", "probs"} for o in out] == [True] * 4
    assert all(abs(sum(o["probs"].values()) - 1) < 1e-4 for o in out)
    bad = kiln(
        "predict", datakiln.find_build(built).id[:10], str(tmp_path / "missing.png"), cwd=built.root, check=False
    )
    assert bad.returncode == 1 and "missing.png" in bad.stderr


@pytest.mark.slow
def test_sweep_prints_a_table_and_saves_a_plot(digits_template: Path, tmp_path: Path) -> None:
    root = tmp_path / "r"
    shutil.copytree(digits_template, root)
    (root / "kiln.toml").write_text("[train]\nepochs = 2\nfolds = 0\n")
    res = kiln_json("sweep", "--width", "0.25,1", "--batch", "64", "--plot", "chart.png", cwd=root)
    assert [p["width"] for p in res["points"]] == [0.25, 1.0]
    assert any(p["pareto"] for p in res["points"])
    with Image.open(root / "chart.png") as im:
        assert im.size == (640, 420)


def test_repo_dataset_for_your_own_loop(built: datakiln.Repo) -> None:
    import torch

    ds = datakiln.dataset(built, split="valid")
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= y < 10
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=16)))
    assert batch[0].shape == (16, 1, 8, 8)
    assert len(ds) == int((np.array(datakiln.find_build(built).examples()["splits"]) == "valid").sum())


def test_gc_removes_a_crashed_build(digits: datakiln.Repo) -> None:
    left = digits.tmp_dir / "build-0123.999.1"
    (left / "package").mkdir(parents=True)
    (left / "package" / "weights.safetensors").write_bytes(b"half")
    kiln("gc", "--prune", "now", cwd=digits.root)
    assert not left.exists()
    assert digits.fsck().ok


# ---- what a new user ran into --------------------------------------------------------------


def test_damaged_archive_and_edited_manifest_are_refused(built: datakiln.Repo, tmp_path: Path) -> None:
    kiln("package", "-o", str(tmp_path / "a.zip"), cwd=built.root)
    data = (tmp_path / "a.zip").read_bytes()
    for at in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        bad = bytearray(data)
        bad[at] ^= 0x55
        (tmp_path / "bad.zip").write_bytes(bytes(bad))
        with pytest.raises(BadPackage):
            datakiln.load(str(tmp_path / "bad.zip"))
        proc = kiln("predict", str(tmp_path / "bad.zip"), str(tmp_path / "a.zip"), cwd=built.root, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    pkg = tmp_path / "pkg"
    shutil.copytree(datakiln.find_build(built).package, pkg)
    text = (pkg / "manifest.json").read_text()
    (pkg / "manifest.json").write_text(text.replace('"9"', '"nine"'))
    with pytest.raises(BadPackage, match="manifest.json does not match its digest"):
        datakiln.load(str(pkg))


def test_without_cross_fitting_train_rows_are_not_called_out_of_sample(built: datakiln.Repo, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(built.root, root)
    b = datakiln.build(datakiln.Repo(root), folds=0, epochs=2).build
    m = b.record["metrics"]
    assert m["train_oos"] == {"accuracy": None, "n": 0}
    assert not any(s["slice"] == "split=train" for s in m["slices"])
    assert "no cross-fitting" in kiln("report", b.id[:8], cwd=root).stdout
    cmp = kiln_json("compare", datakiln.find_build(built).id[:8], b.id[:8], cwd=root)
    assert cmp["shared_examples"] == len(b.arrays()["y"]) - int((np.array(b.examples()["splits"]) == "train").sum())


def test_a_class_without_train_examples_is_refused(repo: datakiln.Repo, tmp_path: Path) -> None:
    layout = {f"imgs/train/cat/{k}.png": png((k, 1, 1)) for k in range(6)}
    layout |= {f"imgs/train/dog/{k}.png": png((1, k, 1)) for k in range(6)}
    layout |= {f"imgs/valid/bird/{k}.png": png((1, 1, k)) for k in range(3)}
    repo.import_folder(write_folder(tmp_path / "src", layout) / "imgs")
    repo.commit("bird only in valid")
    with pytest.raises(NotBuildable, match="'bird' have no labeled examples in the train split"):
        datakiln.build(repo)


def test_predict_input_mistakes_get_clear_errors(built: datakiln.Repo) -> None:
    model = datakiln.load(datakiln.find_build(built).id, repo=str(built.root))
    images, _ = _digit_images(built, 1)
    assert model.predict(images[0]).probs.shape == (1, 10)  # encoded bytes
    chw = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(datakiln.BadImage, match="channels-first"):
        model.predict([chw])
    with pytest.raises(datakiln.BadImage, match="no pixels"):
        model.predict([np.zeros((0, 0, 3), np.uint8)])
    with pytest.raises(datakiln.BadImage, match="not an image"):
        model.predict([b"hello, not an image"])
    assert model.predict(np.zeros((4, 8, 8, 3), np.uint8)).probs.shape == (4, 10)
    assert "10 classes" in repr(model)


def test_api_overrides_split_check_and_spec_hints(built: datakiln.Repo, tmp_path: Path) -> None:
    with pytest.raises(BadSpec, match=r"did you mean width\?"):
        Spec().with_overrides(widht=1)
    path = tmp_path / "kiln.toml"
    path.write_text("[model]\nwidht = 1.0\n")
    with pytest.raises(BadSpec, match=r"did you mean width\?"):
        load_spec(path)
    path.write_text("epochs = 3\n")
    with pytest.raises(BadSpec, match=r"outside any section; put it under \[train\]"):
        load_spec(path)
    with pytest.raises(datakiln.InputError, match="'bogus' is not one of train, valid, test"):
        datakiln.dataset(built, split="bogus")
    with pytest.raises(BuildNotFound, match="at least 4"):
        datakiln.find_build(built, "0")
    bad = kiln("sweep", "--width", ",", cwd=built.root, check=False)
    assert bad.returncode == 1 and "give numbers" in bad.stderr


# ---- hostile packages: hashes that verify do not make a package safe ---------------------------


def _forge_package(pkg: Path, edit: Any = None, files: dict[str, bytes] | None = None) -> None:
    """Rewrite a package directory with new files or manifest fields and a valid digest: what
    anyone who can recompute sha256 (a forger) can do."""
    from datakiln.package.format import FILES, manifest_bytes, manifest_digest, sha256

    m = json.loads((pkg / "manifest.json").read_text())
    for name, data in (files or {}).items():
        (pkg / name).write_bytes(data)
    m["files"] = {n: sha256((pkg / n).read_bytes()) for n in FILES}
    if edit:
        edit(m)
    m["digest"] = manifest_digest(m)
    (pkg / "manifest.json").write_bytes(manifest_bytes(m))


def test_a_package_cannot_read_files_of_the_caller(
    built: datakiln.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    from onnx.external_data_helper import set_external_data

    pkg = tmp_path / "pkg"
    shutil.copytree(datakiln.find_build(built).package, pkg)
    model = onnx.load_from_string((pkg / "model.onnx").read_bytes())
    init = model.graph.initializer[0]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "secret.bin").write_bytes(init.raw_data or np.asarray(init.float_data, np.float32).tobytes())
    set_external_data(init, location="secret.bin")
    init.data_location = onnx.TensorProto.EXTERNAL
    init.ClearField("raw_data")
    init.ClearField("float_data")
    _forge_package(pkg, files={"model.onnx": model.SerializeToString()})
    monkeypatch.chdir(cwd)  # where onnxruntime would have found the file
    with pytest.raises(BadPackage, match="external file"):
        datakiln.load(str(pkg))
    res = kiln("predict", str(pkg), str(tmp_path / "x.png"), cwd=cwd, check=False)
    assert res.returncode == 1 and "external file" in res.stderr and "Traceback" not in res.stderr


def test_external_tensors_are_found_anywhere_in_a_graph() -> None:
    """An attribute tensor of a node inside a subgraph, a sparse initializer, a function: all checked."""
    import onnx
    from onnx import TensorProto, helper

    from datakiln.package.graph import check_graph

    def external(name: str) -> TensorProto:
        t = helper.make_tensor(name, TensorProto.FLOAT, [1], b"\0\0\0\0", raw=True)
        onnx.external_data_helper.set_external_data(t, location="x.bin")
        t.data_location = TensorProto.EXTERNAL
        return t

    const = helper.make_node("Constant", [], ["c"], value=external("v"))
    sub = helper.make_graph([const], "sub", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    iff = helper.make_node("If", ["cond"], ["y"], then_branch=sub, else_branch=sub)
    nested = helper.make_model(helper.make_graph([iff], "g", [cond], [out]))
    with pytest.raises(BadPackage, match="external file"):
        check_graph(nested.SerializeToString(), "nested")
    sparse = helper.make_sparse_tensor(external("values"), helper.make_tensor("i", TensorProto.INT64, [1], [0]), [4])
    g = helper.make_graph([], "g", [], [out], sparse_initializer=[sparse])
    with pytest.raises(BadPackage, match="external file"):
        check_graph(helper.make_model(g).SerializeToString(), "sparse")
    clean = helper.make_model(
        helper.make_graph(
            [helper.make_node("Constant", [], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))],
            "g",
            [],
            [out],
        )
    )
    check_graph(clean.SerializeToString(), "clean")  # no complaint
    with pytest.raises(BadPackage, match="not a valid ONNX"):
        check_graph(b"\x0a\xff\xff\xff\xff\x0f", "garbage")


def _edited(m: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        m = m[p]
    if value is None:
        del m[last]
    else:
        m[last] = value


@pytest.mark.parametrize(
    "path,value,why",
    [
        ("spec.train.threads", 100_000, "threads"),
        ("input.size", [20000, 20000], "input size"),
        ("input.channels", 7, "channels"),
        ("classes", None, "class names"),
        ("input", None, "input contract"),
        ("classes", ["a"] * 3, "distinct"),
    ],
)
def test_manifests_asking_for_too_much_are_refused(
    built: datakiln.Repo, tmp_path: Path, path: str, value: Any, why: str
) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(datakiln.find_build(built).package, pkg)
    _forge_package(pkg, edit=lambda m: _edited(m, path, value))
    with pytest.raises(BadPackage, match=why):
        datakiln.load(str(pkg))
    res = kiln("predict", str(pkg), str(tmp_path / "x.png"), cwd=tmp_path, check=False)
    assert res.returncode == 1 and res.stderr.startswith("kiln:") and "Traceback" not in res.stderr


def test_a_zip_bomb_is_refused_by_its_claimed_sizes(built: datakiln.Repo, tmp_path: Path) -> None:
    """Refused before a byte is inflated: the member claims more than a package may hold."""
    kiln("package", "-o", str(tmp_path / "ok.kiln.zip"), cwd=built.root)
    data = bytearray((tmp_path / "ok.kiln.zip").read_bytes())
    # Patch the uncompressed size of model.onnx in the central directory (what zipfile trusts).
    with zipfile.ZipFile(tmp_path / "ok.kiln.zip") as z:
        info = z.getinfo("model.onnx")
    cd = data.find(b"PK\x01\x02" + data[data.find(b"PK\x01\x02") + 4 : data.find(b"PK\x01\x02") + 4])
    while True:
        cd = data.find(b"PK\x01\x02", cd)
        name_len = int.from_bytes(data[cd + 28 : cd + 30], "little")
        if bytes(data[cd + 46 : cd + 46 + name_len]) == b"model.onnx":
            break
        cd += 4
    assert int.from_bytes(data[cd + 24 : cd + 28], "little") == info.file_size
    data[cd + 24 : cd + 28] = (3 << 30).to_bytes(4, "little")
    (tmp_path / "bomb.kiln.zip").write_bytes(bytes(data))
    with pytest.raises(BadPackage, match="model.onnx has 3,221,225,472 bytes"):
        datakiln.load(str(tmp_path / "bomb.kiln.zip"))


def test_a_build_that_cannot_fit_in_memory_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """input.size 1024x1024 died after minutes with a raw MemoryError and left a 1.8 GB cache."""
    src = write_folder(tmp_path / "src", {f"{c}/{i}.png": png((i * 9, 40 * c, 7)) for c in range(2) for i in range(12)})
    r = datakiln.Repo.init(tmp_path / "r")
    r.import_folder(src, jobs=1)
    r.commit("photos")
    monkeypatch.setenv("KILN_MAX_MEMORY", "512M")
    t = time.perf_counter()
    with pytest.raises(BadSpec, match=r"input.size \[1024, 1024\] needs about .* GiB .*KILN_MAX_MEMORY"):
        datakiln.build(r, **{"input.size": [1024, 1024]}, progress=False)
    assert time.perf_counter() - t < 5  # refused before a pixel was decoded
    assert not list((r.layout.cache).glob("pixels-*")) and not list(r.tmp_dir.iterdir())
    res = kiln("build", "--json", cwd=r.root, env={**ENV, "KILN_MAX_MEMORY": "garbage"}, check=False)
    assert res.returncode == 1 and "KILN_MAX_MEMORY='garbage' is not a size" in res.stderr


def test_zip_members_that_inflate_past_their_claim_or_use_other_methods_are_refused(
    built: datakiln.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member may claim 100 bytes and inflate to gigabytes: it is read a chunk at a time and
    refused at the limit (or at its CRC). bzip2 and lzma members are not read at all."""
    import resource

    from datakiln.package import archive

    monkeypatch.setitem(archive.MAX_BYTES, "model.onnx", 4 << 20)  # the real limit is 1 GiB: same code, less RAM

    kiln("package", "-o", str(tmp_path / "ok.kiln.zip"), cwd=built.root)
    with zipfile.ZipFile(tmp_path / "ok.kiln.zip") as z:
        files = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(tmp_path / "bz.zip", "w", zipfile.ZIP_BZIP2) as z:
        for n, data in files.items():
            z.writestr(n, data)
    with pytest.raises(BadPackage, match="compressed with method 12"):
        datakiln.load(str(tmp_path / "bz.zip"))
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in files.items():
            z.writestr(n, data if n != "model.onnx" else b"\0" * (archive.MAX_BYTES["model.onnx"] + (8 << 20)))
    raw = bytearray((tmp_path / "big.zip").read_bytes())
    at = raw.find(b"PK\x01\x02")
    while bytes(raw[at + 46 : at + 56]) != b"model.onnx":
        at = raw.find(b"PK\x01\x02", at + 4)
    raw[at + 24 : at + 28] = (100).to_bytes(4, "little")  # claims 100 bytes
    (tmp_path / "liar.zip").write_bytes(bytes(raw))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadPackage):
        datakiln.load(str(tmp_path / "liar.zip"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 8 * 1024  # KB: stopped near the limit


def test_a_crashed_rebuild_leaves_no_second_build(built: datakiln.Repo, tmp_path: Path) -> None:
    """A crash between a rebuild's renames leaves `<id>.old.<pid>`: it is not listed as a build
    (a prefix would match two) and `kiln gc` removes it; a foreign build.json is not a build."""
    root = tmp_path / "r"
    shutil.copytree(built.root, root)
    r = datakiln.Repo(root)
    b = datakiln.find_build(r)
    shutil.copytree(b.dir, b.dir.with_name(b.id + ".old.4242"))
    (r.layout.builds / "junk").mkdir()
    (r.layout.builds / "junk" / "build.json").write_text('["not", "a", "record"]')
    assert [x.id for x in datakiln.builds(r)] == [b.id] and datakiln.find_build(r, b.id[:6]).id == b.id
    assert "1 temp file(s)" in kiln("gc", cwd=root).stdout
    assert not b.dir.with_name(b.id + ".old.4242").exists() and b.dir.exists()
