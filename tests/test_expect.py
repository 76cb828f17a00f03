"""Model expectations: ``[expect]`` checked by ``kiln build``, re-checked by ``kiln test``, on a real
build (the ``built`` digits fixture), with seeded perturbations and a real FGSM attack."""

from __future__ import annotations

import json

import pytest

import datakiln
from datakiln.compile.expect import check
from datakiln.compile.spec import ExpectSpec, load_spec
from tests.conftest import kiln

PASSING = """
[expect]
accuracy = 0.5
class_accuracy = 0.2
slice_accuracy = 0.5
p99_ms = 1000
noise_drop = 0.5
shift_drop = 0.5
brightness_drop = 0.5
fgsm_drop = 1.0
fgsm_epsilon = 0.1
"""


def test_kiln_test_measures_every_expectation_and_fails_loudly(built: datakiln.Repo) -> None:
    (built.root / "expect.toml").write_text(PASSING)
    out = json.loads(kiln("test", "--spec", "expect.toml", "--json", cwd=built.root).stdout)
    assert out["passed"] and out["split"] == "test" and out["n"] > 100
    names = [c["name"] for c in out["checks"]]
    assert names[0] == "accuracy" and "class 7 accuracy" in names and "fgsm accuracy drop" in names
    assert any(n.startswith("slice ink=") for n in names) and not any(n.startswith("slice split=") for n in names)
    by = {c["name"]: c for c in out["checks"]}
    assert by["accuracy"]["measured"] == pytest.approx(out["clean_accuracy"])
    # A gradient-sign step hurts more than random noise of the same size: it is aimed.
    assert by["fgsm accuracy drop"]["measured"] > by["noise accuracy drop"]["measured"] + 0.1
    (built.root / "strict.toml").write_text("[expect]\naccuracy = 0.9999\nfgsm_drop = 0.0\nfgsm_epsilon = 0.1\n")
    failed = kiln("test", "--spec", "strict.toml", cwd=built.root, check=False)
    assert failed.returncode == 1 and "FAIL  accuracy" in failed.stdout and "FAIL  fgsm accuracy drop" in failed.stdout


def test_a_build_checks_its_expectations_once_and_the_results_follow_the_spec(built: datakiln.Repo) -> None:
    b = datakiln.find_build(built)
    (built.root / "kiln.toml").write_text("[train]\nepochs = 8\nfolds = 3\n" + PASSING)
    res = datakiln.build(built, progress=False)
    assert res.cached and res.build.id == b.id and res.expect is not None and res.expect["passed"]
    assert res.summary()["expect"]["checks"] == res.expect["checks"]
    # The same expectations again: the saved results, not a new measurement.
    again = datakiln.build(built, progress=False)
    assert again.expect is not None and again.expect["checked"] == res.expect["checked"]
    # New expectations: measured again (the weights are the same build).
    (built.root / "kiln.toml").write_text("[train]\nepochs = 8\nfolds = 3\n[expect]\naccuracy = 0.9999\n")
    strict = datakiln.build(built, progress=False)
    assert strict.build.id == b.id and strict.expect is not None and not strict.expect["passed"]
    report = kiln("report", cwd=built.root).stdout
    assert "expectations on test" in report and "FAIL  accuracy" in report
    assert check(built, b, ExpectSpec(accuracy=0.0))["passed"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[expect]\naccuracy = 2\n", "expect.accuracy must be a number from 0 to 1"),
        ("[expect]\nshift_pixels = 1.5\n", "expect.shift_pixels must be an integer"),
        ("[expect]\naccuracyy = 0.9\n", "did you mean accuracy"),
        ("[model]\nfreeze_epochs = 2\n", "set model.backbone too"),
        ('[model]\nbackbone = "not a ref"\n', "is not a package reference"),
    ],
)
def test_bad_expectations_and_meld_keys_are_refused_by_name(tmp_path: object, toml: str, message: str) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "kiln.toml"
    path.write_text(toml)
    with pytest.raises(datakiln.BadSpec, match=message):
        load_spec(path)
