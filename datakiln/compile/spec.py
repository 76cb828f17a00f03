"""The build spec: ``kiln.toml`` parsed into a frozen dataclass.

Unknown keys and wrong types are refused with the key's name. Every default says why. The
resolved spec (every key, defaults filled in) is stored in the build and the package, so a
package alone says how to rebuild it. ``"auto"`` values are decided from the dataset when the
build starts (image size, channels, normalisation) and the decided values are recorded too.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadSpec, InputError

SPEC_FILE = "kiln.toml"
CNN_BASE = 32  # channels of the first block at width 1; each block doubles them
MLP_BASE = 256  # hidden units at width 1
ARCHS = ("cnn", "mlp")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "step")
NORMALIZE = ("auto", "none")
KEEP = ("last", "best")
DEVICES = ("auto", "cpu", "cuda")
STEMS = (1, 2, 4, 8)
# Keys that take "auto" besides their concrete form: decided from the data (or the machine) when
# the build starts, and recorded in the build's "resolved" section.
AUTO_KEYS = {
    ("input", "size"),
    ("input", "channels"),
    ("input", "normalize"),
    ("model", "stem"),
    ("train", "epochs"),
    ("train", "workers"),
}
# Keys that never change a bit of the weights: left out of the build id, so a build found with
# one worker count is the build for any other.
NOT_IN_ID = {("train", "workers")}


def channels(base: int, width: float, scale: int = 1) -> int:
    """Channels (or units) of a layer: ``base`` times the width multiplier and the block's scale."""
    return max(4, round(base * width * scale))


@dataclass(frozen=True)
class ModelSpec:
    # A small CNN beats an MLP on any image task; the MLP is the baseline to compare with.
    arch: str = "cnn"
    # Channel multiplier: 0.5 halves every layer's channels, so conv cost drops about 4x.
    width: float = 1.0
    # Conv blocks (each two 3x3 convs, then 2x2 pooling while the map is at least 4 pixels), or
    # hidden layers for the MLP. Two suit images up to ~32 px; add one per doubling.
    depth: int = 2
    # Before the classifier only: enough to stop a small net memorising a small dataset.
    dropout: float = 0.1
    # Downsampling stem: a stride-s patch convolution before the blocks, so a block's cost per
    # image stays about that of a 14-28 px input (64 px RGB: 15 ms -> 1 ms per training image on
    # one core). "auto": the largest power of two that leaves the first block at least 14 px.
    stem: int | str = "auto"
    # A published package to build on (OWNER/NAME@RANGE): its layers up to the embedding, with
    # its weights, then a new head for this dataset's classes, all fine-tuned together. Its
    # architecture and input contract replace arch/width/depth/stem and input size/channels.
    backbone: str = ""
    # With a backbone: epochs that train only the new head first (the backbone frozen, its batch
    # statistics too), so a random head does not wreck the pretrained features; 0: never frozen.
    freeze_epochs: int = 0


@dataclass(frozen=True)
class InputSpec:
    # [height, width], or "auto": the most common image size, capped at 64 px a side.
    size: list[int] | str = "auto"
    # 1 or 3, or "auto": 1 when every image is grayscale.
    channels: int | str = "auto"
    # "auto": per-channel mean and std of the train split, applied inside the model. "none": x/255.
    normalize: str = "auto"


@dataclass(frozen=True)
class AugmentSpec:
    # Random translation by up to this many pixels: the cheapest augmentation that always helps.
    shift: int = 1
    # Horizontal flips: right for photos, wrong for digits and text, so off by default.
    flip: bool = False
    # Random brightness scale in [1 - b, 1 + b].
    brightness: float = 0.0


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = "adamw"
    lr: float = 0.003
    weight_decay: float = 0.0005
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # decays to zero by the last step: no tuning of step points
    # "auto": as many epochs as show the network about 250,000 images (AUTO_SAMPLES), at most 30
    # and at least 2: small datasets get 30 epochs, 50,000 images get 5. A fixed count made a
    # first build of 60,000 images take hours.
    epochs: int | str = "auto"
    batch_size: int = 64
    seed: int = 0
    # Stop when valid accuracy has not improved for this many epochs (0: never). Off by default:
    # the cosine schedule anneals to zero by the last epoch, and on a small valid split an early
    # lucky epoch (digits: 177 examples) stopped training at epoch 13 with epoch 3's weights.
    patience: int = 0
    # Which weights the build keeps: "last" (the annealed end of the schedule: robust) or "best"
    # (the epoch with the best valid accuracy: can pick a noisy early spike on a small valid split).
    keep: str = "last"
    # Cross-fitting folds for out-of-sample predictions on the train split (0: none).
    folds: int = 5
    # Part of the spec because the bits of the weights depend on it. One thread is also the
    # fastest on a busy 2-core machine.
    threads: int = 1
    # Labels seeded by a model are suggestions, not decisions: train on them only if asked.
    use_model_labels: bool = False
    # Worker processes that run the fits (the folds and the final model) side by side; "auto":
    # the usable cores divided by threads. Not part of the build id: each fit's weights are the
    # same bits whatever process runs it.
    workers: int | str = "auto"
    # "cpu", "cuda", or "auto" (cuda when torch sees a GPU). Part of the build id as resolved.
    device: str = "auto"


@dataclass(frozen=True)
class ExpectSpec:
    """What a build must satisfy (``kiln build`` checks, ``kiln test`` re-checks, ``kiln publish``
    refuses a failure). A key left out is not checked. Accuracies are fractions (0.95), on the
    test split (valid when there is no test split)."""

    accuracy: float | None = None  # minimum accuracy overall
    class_accuracy: float | None = None  # minimum accuracy (recall) of every class
    slice_accuracy: float | None = None  # minimum out-of-sample accuracy of every metadata slice
    slice_min_n: int = 20  # slices with fewer examples are too noisy to judge
    p99_ms: float | None = None  # maximum p99 milliseconds of one image through onnxruntime
    noise_drop: float | None = None  # maximum accuracy drop under Gaussian pixel noise
    shift_drop: float | None = None  # ... under a random translation
    brightness_drop: float | None = None  # ... under a random brightness scale
    fgsm_drop: float | None = None  # ... under a gradient-sign (FGSM) attack
    noise_sigma: float = 0.1  # std of the noise, in units of the [0, 1] pixel range
    shift_pixels: int = 1  # largest translation
    brightness: float = 0.3  # scale drawn from [1 - b, 1 + b]
    fgsm_epsilon: float = 0.03  # the attack's step, in units of the [0, 1] pixel range
    seed: int = 0  # the perturbations' draws

    def checks(self) -> bool:
        """Whether any check is asked for."""
        names = ("accuracy", "class_accuracy", "slice_accuracy", "p99_ms", "noise_drop", "shift_drop")
        return any(getattr(self, n) is not None for n in (*names, "brightness_drop", "fgsm_drop"))


# [expect] keys that may be left out (None: not checked), and the range each takes.
EXPECT_LIMITS: dict[str, tuple[float, float]] = {
    "accuracy": (0, 1),
    "class_accuracy": (0, 1),
    "slice_accuracy": (0, 1),
    "slice_min_n": (1, 1_000_000),
    "p99_ms": (0.001, 600_000),
    "noise_drop": (0, 1),
    "shift_drop": (0, 1),
    "brightness_drop": (0, 1),
    "fgsm_drop": (0, 1),
    "noise_sigma": (0, 1),
    "shift_pixels": (1, 64),
    "brightness": (0, 0.95),
    "fgsm_epsilon": (0, 1),
    "seed": (0, 2**32 - 1),
}


@dataclass(frozen=True)
class Spec:
    model: ModelSpec = field(default_factory=ModelSpec)
    input: InputSpec = field(default_factory=InputSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    expect: ExpectSpec = field(default_factory=ExpectSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.id_dict(), sort_keys=True).encode()).hexdigest()

    def id_dict(self) -> dict[str, Any]:
        """The keys that can change the weights: what a build id hashes."""
        d = self.to_dict()
        for section, name in NOT_IN_ID:
            del d[section][name]
        del d["expect"]  # expectations judge the weights; they never change them
        return d

    def with_overrides(self, **dotted: Any) -> Spec:
        """``spec.with_overrides(**{"model.width": 0.5})`` or ``(width=0.5)``: a checked copy with keys replaced."""
        d = self.to_dict()
        for key, value in dotted.items():
            key = SHORT_KEYS.get(key, key)
            section, _, name = key.partition(".")
            if section not in d or name not in d[section]:
                known = [*SHORT_KEYS, *all_keys()]
                raise BadSpec(f"unknown spec key {key!r}{_hint(key, known)}; known: {', '.join(known)}")
            d[section][name] = value
        return parse_dict(d, "overrides")


# Short names for the keys people change most: `kiln build --width 0.5`, `repo.build(width=0.5)`.
SHORT_KEYS = {
    "arch": "model.arch",
    "width": "model.width",
    "depth": "model.depth",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "folds": "train.folds",
    "threads": "train.threads",
    "workers": "train.workers",
    "device": "train.device",
}

SECTIONS: dict[str, type[Any]] = {
    "model": ModelSpec,
    "input": InputSpec,
    "augment": AugmentSpec,
    "train": TrainSpec,
    "expect": ExpectSpec,
}


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _check_type(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:  # str
        ok = isinstance(value, str)
    if not ok:
        raise BadSpec(f"{where} must be {TYPE_NAMES[type(default)]}, not {value!r}")
    return value


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_value(section: str, name: str, value: Any, where: str) -> Any:
    """Type and range checks; ``auto`` fields accept ``"auto"`` or their concrete form."""
    if value == "auto" and (section, name) in AUTO_KEYS:
        return value
    if (section, name) == ("model", "stem"):
        if value not in STEMS or isinstance(value, bool):
            raise BadSpec(f'{where} must be 1 (no stem), 2, 4, 8 or "auto", not {value!r}')
        return value
    if section == "expect":
        return _check_expect(name, value, where)
    if (section, name) == ("model", "backbone"):
        if not isinstance(value, str):
            raise BadSpec(f'{where} must be a package reference like "alice/digits-cnn@^1.2", not {value!r}')
        if value:
            from ..registry.ref import parse_ref

            try:
                parse_ref(value)
            except InputError as e:
                raise BadSpec(f"{where}: {e}") from None
        return value
    if (section, name) in (("train", "epochs"), ("train", "workers")) and isinstance(value, str):
        raise BadSpec(f'{where} must be an integer or "auto", not {value!r}')
    if (section, name) == ("input", "size"):
        if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int and 1 <= v <= 1024 for v in value)):
            raise BadSpec(f'{where} must be [height, width] in pixels (1-1024) or "auto", not {value!r}')
        return list(value)
    if (section, name) == ("input", "channels"):
        if value not in (1, 3) or isinstance(value, bool):
            raise BadSpec(f'{where} must be 1, 3 or "auto", not {value!r}')
        return value
    default = getattr(SECTIONS[section](), name)
    if (section, name) in AUTO_KEYS:
        default = 0  # the concrete form of an "auto" key here is an integer (epochs, workers)
    value = _check_type(value, default, where)
    choices = {
        "arch": ARCHS,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "normalize": NORMALIZE,
        "keep": KEEP,
        "device": DEVICES,
    }.get(name)
    if choices and value not in choices:
        raise BadSpec(f"{where} must be one of {', '.join(choices)}, not {value!r}")
    limits: dict[str, tuple[float, float]] = {
        "width": (0.05, 16),
        "depth": (1, 8),
        "dropout": (0, 0.95),
        "shift": (0, 64),
        "brightness": (0, 0.9),
        "lr": (1e-7, 10),
        "weight_decay": (0, 1),
        "momentum": (0, 0.999),
        "epochs": (1, 10_000),
        "batch_size": (2, 65_536),
        "seed": (0, 2**32 - 1),
        "patience": (0, 10_000),
        "freeze_epochs": (0, 10_000),
        "folds": (0, 50),
        "threads": (1, 256),
        "workers": (1, 256),
    }
    if name in limits and not limits[name][0] <= value <= limits[name][1]:
        lo, hi = limits[name]
        raise BadSpec(f"{where} = {value!r} is out of range; use a value from {lo:g} to {hi:g}")
    if name == "folds" and value == 1:
        raise BadSpec(f"{where} = 1 cannot hold anything out; use 0 (no cross-fitting) or 2 or more")
    return value


def _check_expect(name: str, value: Any, where: str) -> Any:
    integer = name in ("slice_min_n", "shift_pixels", "seed")
    if value is None and getattr(ExpectSpec(), name) is None:
        return None  # a spec read back from a build: an unset check
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (not integer or isinstance(value, int))
    lo, hi = EXPECT_LIMITS[name]
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise BadSpec(f"{where} must be {kind} from {lo:g} to {hi:g}, not {value!r}")
    return value if integer else float(value)


def parse_dict(d: dict[str, Any], source: str) -> Spec:
    parts: dict[str, Any] = {}
    for section, value in d.items():
        if not isinstance(value, dict):
            owner = [s for s, cls in SECTIONS.items() if section in {f.name for f in dataclasses.fields(cls)}]
            where = f"under [{owner[0]}]" if owner else "in a section"
            raise BadSpec(f"{source}: {section} = {value!r} is outside any section; put it {where}")
        if section not in SECTIONS:
            raise BadSpec(
                f"{source}: unknown section [{section}]{_hint(section, list(SECTIONS))}; sections are "
                f"{', '.join(SECTIONS)}"
            )
        cls = SECTIONS[section]
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, v in value.items():
            if name not in names:
                raise BadSpec(
                    f"{source}: unknown key {section}.{name}{_hint(name, sorted(names))}; [{section}] takes "
                    f"{', '.join(sorted(names))}"
                )
            kwargs[name] = _check_value(section, name, v, f"{source}: {section}.{name}")
        parts[section] = cls(**kwargs)
    spec = Spec(**parts)
    if spec.model.freeze_epochs and not spec.model.backbone:
        raise BadSpec(f"{source}: model.freeze_epochs freezes a backbone; set model.backbone too, or remove it")
    return spec


def load_spec(path: Path | None) -> Spec:
    """The spec in ``path`` (a kiln.toml); defaults for everything it leaves out, or if it is None."""
    if path is None:
        return Spec()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadSpec(f"{path}: no such build spec; create it (kiln init writes a default) or pass --spec") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadSpec(f"{path}: not valid TOML ({e}); fix the line it names") from None
    return parse_dict(data, str(path))


DEFAULT_TOML = """\
# kiln build spec: how `kiln build` turns a commit into a model. Every key is optional;
# docs/build.md lists them all. "auto" values are decided from the data at build time.

[model]
arch = "cnn"        # "cnn" or "mlp"
width = 1.0         # channel multiplier: 0.5 is about twice as fast and a bit less accurate
depth = 2           # conv blocks (or hidden layers for the mlp)

[input]
size = "auto"       # [height, width], or the most common image size (at most 64 px a side)
channels = "auto"   # 1, 3, or 1 when every image is grayscale

[augment]
shift = 1           # random translation in pixels
flip = false        # horizontal flips: on for photos, off for digits and text

[train]
epochs = "auto"     # about 250,000 images seen: 30 epochs for small data, 5 for 50,000 images
batch_size = 64
lr = 0.003
seed = 0
folds = 5           # cross-fitting for out-of-sample predictions on every train example
threads = 1         # part of the result: weights are bit-identical for the same threads
workers = "auto"    # fits side by side: the cores / threads (never changes the weights)
device = "auto"     # "cpu", "cuda", or cuda when there is one
"""


def write_default(root: Path) -> Path | None:
    """A commented kiln.toml in ``root`` (``kiln init``), unless the folder already has one."""
    path = root / SPEC_FILE
    if path.exists():
        return None
    path.write_text(DEFAULT_TOML)
    return path
