"""Running a build's fits (one per fold, and the final model): side by side in worker processes,
or one after another in this process, with one progress display for the whole build.

The fits are independent, and each is deterministic on its own (its seed, its rows, the spec's
threads), so the weights are the same bits whatever the number of workers or the order the fits
finish in. Workers are fresh interpreters (torch's threads do not survive a ``fork``); each
reads the pixel file itself, writes its weights and predictions into the build's temp folder,
and sends progress and its summary back over a pipe. A worker's error, a worker killed (by the
kernel's out-of-memory killer, say) or Ctrl-C stops every worker; the builder then removes the
temp folder, so nothing is half-written.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path
from typing import Any

import numpy as np

from .. import interrupt
from ..errors import BuildFailed
from ..progress import PROGRESS_FILE_ENV, report_progress
from . import distributed
from .plan import Resolved, fit_steps

Report = Callable[[dict[str, Any]], None]
FINAL = "final"


@dataclass
class FitContext:
    """What every fit of a build shares."""

    pixel_path: str
    y: np.ndarray  # (N,) class index per row, -1 where not trained on
    valid_rows: np.ndarray
    spec: dict[str, Any]
    resolved: Resolved
    mean: list[float]
    std: list[float]
    classes: int
    out: str  # the build's temp folder: fits write <out>/fits/<name>.*
    backbone: str | None = None  # weights of a published package every fit starts from (model.backbone)


@dataclass
class FitTask:
    index: int
    name: str  # "fold-1" ... or "final"
    seed: int
    rows: np.ndarray  # train rows
    predict: np.ndarray  # rows to predict: the held-out fold, or every row for the final model
    warm_from: str | None = None  # weights of the parent build's matching fit
    fresh: np.ndarray | None = None  # positions in rows new or relabeled since that build

    @property
    def label(self) -> str:
        return self.name.replace("-", " ")


@dataclass
class FitSummary:
    name: str
    epochs_run: int
    best_epoch: int
    history: list[dict[str, Any]]
    dim: int
    seconds: float
    warm: bool


def fit_paths(out: str | Path, name: str) -> dict[str, Path]:
    d = Path(out) / "fits"
    return {"weights": d / f"{name}.safetensors", "probs": d / f"{name}.probs.npy", "emb": d / f"{name}.emb.npy"}


def run_fit(ctx: FitContext, task: FitTask, report: Report) -> FitSummary:
    """Train one fit, predict its rows, and write ``fits/<name>.safetensors`` (its weights) and
    ``fits/<name>.probs.npy`` (and ``.emb.npy`` for the final model) under ``ctx.out``."""
    from safetensors.numpy import save

    from . import train as T
    from .data import PixelFile
    from .models import Classifier
    from .spec import parse_dict

    t0 = time.perf_counter()
    spec = parse_dict(ctx.spec, "the build's spec")
    r = ctx.resolved
    T.set_determinism(spec.train.threads, task.seed, r.device)
    px = PixelFile(ctx.pixel_path)
    model = Classifier(spec.model, (r.channels, r.size[0], r.size[1]), ctx.classes, ctx.mean, ctx.std, r.stem)
    _start_weights(model, ctx, task, px)
    # A fold model's valid accuracy decides nothing unless patience or keep = "best" asks for it:
    # measuring it every epoch cost 7% of a 60,000-image build.
    needed = task.name == FINAL or spec.train.patience > 0 or spec.train.keep == "best"
    valid = ctx.valid_rows if needed else ctx.valid_rows[:0]
    data = T.FitData(px, task.rows, ctx.y[task.rows], valid, ctx.y[valid], task.fresh)
    last = [0.0]

    def on_step(step: int, steps: int, epoch: int, epochs: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25 or step == steps:
            last[0] = now
            report({"fit": task.index, "step": step, "steps": steps, "epoch": epoch + 1, "epochs": epochs})

    def on_epoch(epoch: int, loss: float, acc: float | None) -> None:
        report({"fit": task.index, "epoch": epoch + 1, "loss": loss, "valid": acc})

    res = T.fit(
        data,
        spec,
        model,
        seed=task.seed,
        epochs=r.epochs,
        device=r.device,
        warm=task.warm_from is not None,
        freeze_epochs=spec.model.freeze_epochs if ctx.backbone else 0,
        world=r.world,
        rank=distributed.rank() if r.world > 1 else 0,
        on_epoch=on_epoch,
        on_step=on_step,
    )
    report({"fit": task.index, "predicting": True})
    final = task.name == FINAL
    if r.world > 1:
        # Each rank predicts its share of the rows; rank 0 gathers them and writes the fit's files.
        rank = distributed.rank()
        mine = T.predict(res.model, px, task.predict[rank :: r.world], embed=final, device=r.device)
        shares = distributed.gather(mine)
        if shares is None:
            px.close()
            return FitSummary(task.name, res.epochs_run, res.best_epoch, res.history, res.model.dim, 0.0, False)
        probs, emb = _interleave([p for p, _ in shares]), _interleave([e for _, e in shares])
    else:
        probs, emb = T.predict(res.model, px, task.predict, embed=final, device=r.device)
    paths = fit_paths(ctx.out, task.name)
    paths["weights"].parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().numpy() for k, v in res.model.state_dict().items()}
    paths["weights"].write_bytes(save(state, metadata={"format": "pt"}))  # save_file would make it 0600
    np.save(paths["probs"], probs, allow_pickle=False)
    if final:
        np.save(paths["emb"], emb, allow_pickle=False)
    px.close()
    return FitSummary(
        task.name,
        res.epochs_run,
        res.best_epoch,
        res.history,
        res.model.dim,
        round(time.perf_counter() - t0, 3),
        task.warm_from is not None,
    )


def _start_weights(model: Any, ctx: FitContext, task: FitTask, px: Any) -> None:
    """A warm fit starts from its parent's weights; a meld fit from the backbone's, with the new
    head imprinted from this fit's rows; any other fit from the seeded random ones."""
    if task.warm_from:
        _load_weights(model, task.warm_from)
    elif ctx.backbone:
        from .meld import imprint_head, load_backbone

        load_backbone(model, ctx.backbone)
        imprint_head(model, px, task.rows, ctx.y[task.rows])


def _interleave(shares: list[np.ndarray]) -> np.ndarray:
    """Undo ``rows[rank::world]``: share k holds rows k, k + world, ..."""
    out = np.empty((sum(len(a) for a in shares), *shares[0].shape[1:]), dtype=shares[0].dtype)
    for k, a in enumerate(shares):
        out[k :: len(shares)] = a
    return out


def _load_weights(model: Any, path: str) -> None:
    import torch
    from safetensors.numpy import load_file

    state = {k: torch.from_numpy(v) for k, v in load_file(path).items()}
    model.load_state_dict(state)


def run_fits(ctx: FitContext, tasks: list[FitTask], workers: int, show: bool) -> dict[str, FitSummary]:
    """Every task's summary by name: in this process for one worker, else in ``workers`` processes."""
    batch = int(ctx.spec["train"]["batch_size"])
    board = Board(tasks, ctx.resolved.epochs, batch, show, ctx.resolved.world)
    try:
        if workers <= 1:
            out = {}
            for task in tasks:
                board.start(task.index)
                out[task.name] = run_fit(ctx, task, board.update)
                board.finish(task.index)
            return out
        return _pool(ctx, tasks, workers, board)
    finally:
        board.close()


def _pool(ctx: FitContext, tasks: list[FitTask], workers: int, board: Board) -> dict[str, FitSummary]:
    """Fits in ``workers`` processes, each a fresh interpreter (``python -m datakiln.compile.fits``:
    not multiprocessing's spawn, which re-runs the caller's script in every worker) that talks
    to this process over a pipe. The longest fit (the final one) goes first."""
    pending = list(tasks)
    by_name = {t.name: t for t in tasks}
    results: dict[str, FitSummary] = {}
    pool = [_Worker.start(ctx) for _ in range(min(workers, len(tasks)))]
    try:
        for w in pool:
            w.give(pending.pop(0) if pending else None)
        while len(results) < len(tasks):
            interrupt.check()
            busy = [w for w in pool if w.task is not None]  # a worker given None has left
            ready = connection.wait([w.conn for w in busy], timeout=0.2)
            for w in busy:
                if w.conn not in ready:
                    continue
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError):
                    raise BuildFailed(w.death()) from None
                if kind == "progress":
                    board.update(payload)
                elif kind == "done":
                    results[payload.name] = payload
                    board.finish(by_name[payload.name].index)
                    w.give(pending.pop(0) if pending else None)
                elif kind == "error":
                    name, message = payload
                    raise BuildFailed(f"{by_name[name].label} failed in a build worker: {message}")
            for w in busy:
                if w.task is not None and w.proc.poll() is not None and w.conn not in ready:
                    raise BuildFailed(w.death())
            for w in pool:
                if w.task is not None and not board.fits[w.task.index].running:
                    board.start(w.task.index)
        return results
    finally:
        for w in pool:
            w.stop()


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    conn: Any  # multiprocessing.connection.Connection
    task: FitTask | None = None

    @classmethod
    def start(cls, ctx: FitContext) -> _Worker:
        ours, theirs = connection.Pipe()
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the datakiln package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        env.pop(PROGRESS_FILE_ENV, None)  # the parent reports progress for the whole build
        fd = theirs.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(fd)], pass_fds=[fd], env=env, stdin=subprocess.DEVNULL
        )
        theirs.close()
        ours.send(ctx)
        return cls(proc, ours)

    def give(self, task: FitTask | None) -> None:
        self.task = task
        self.conn.send(task)

    def death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        how = "closed its pipe" if code is None else f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        hint = " (the kernel kills the largest process when memory runs out)" if code == -signal.SIGKILL else ""
        what = self.task.label if self.task else "a fit"
        return (
            f"a build worker died ({how}{hint}) while running {what}; nothing was kept. Run 'kiln build' again; "
            "short of memory, lower train.workers or train.batch_size"
        )

    def stop(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _serve(fd: int) -> None:
    """A worker process: the context, then fits until a None; progress and results go back."""
    # Ctrl-C reaches the whole process group; the parent decides, and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    conn = connection.Connection(fd)
    ctx = conn.recv()
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            summary = run_fit(ctx, task, lambda e: conn.send(("progress", e)))
        except BaseException as e:  # noqa: BLE001  # every failure goes to the parent, by name
            detail = str(e) or type(e).__name__
            if not isinstance(e, Exception) or os.environ.get("KILN_DEBUG"):
                detail += "\n" + traceback.format_exc()
            conn.send(("error", (task.name, f"{type(e).__name__}: {detail}")))
            return
        conn.send(("done", summary))


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this worker when its parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)  # the parent was already gone


def _duration(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class FitState:
    label: str
    steps: int  # estimated optimizer steps, corrected by the fit's first report
    done: int = 0
    epoch: int = 0
    epochs: int = 0
    running: bool = False
    finished: bool = False
    loss: float | None = None
    valid: float | None = None


@dataclass
class Board:
    """One progress display for the whole build: fits done, each running fit's epoch, and the
    time left, on stderr (one line, when enabled) and as progress events (``kiln ui``, ``--json``).
    Prediction is counted as a third of a training step per batch (a forward pass alone)."""

    tasks: list[FitTask]
    epochs: int
    batch: int
    show: bool
    world: int = 1
    fits: dict[int, FitState] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _drawn: float = 0.0
    _sent: float = 0.0

    def __post_init__(self) -> None:
        for t in self.tasks:
            fresh = 0 if t.fresh is None else len(t.fresh)
            steps = fit_steps(len(t.rows), self.batch, self.epochs, t.warm_from is not None, fresh, self.world)
            steps += len(t.predict) // (3 * self.batch)
            self.fits[t.index] = FitState(t.label, max(steps, 1), epochs=1 if t.warm_from else self.epochs)

    def start(self, index: int) -> None:
        self.fits[index].running = True
        self._emit(force=True)

    def finish(self, index: int) -> None:
        f = self.fits[index]
        f.running, f.finished, f.done = False, True, f.steps
        self._emit(force=True)

    def update(self, event: dict[str, Any]) -> None:
        f = self.fits[int(event["fit"])]
        if "steps" in event:
            f.done, f.epoch, f.epochs = int(event["step"]), int(event["epoch"]), int(event["epochs"])
        if "loss" in event:
            f.loss, f.valid = event["loss"], event["valid"]
        self._emit()

    def fraction(self) -> float:
        total = sum(f.steps for f in self.fits.values())
        return min(1.0, sum(min(f.done, f.steps) for f in self.fits.values()) / total)

    def eta(self) -> float | None:
        """Seconds left, from the pace so far (every worker's steps together); None until known."""
        frac, spent = self.fraction(), time.monotonic() - self.started
        if frac < 0.01 or spent < 2:
            return None
        return spent * (1 - frac) / frac

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._sent >= 0.5:
            self._sent = now
            report_progress(**self.event())
        if self.show and (force or now - self._drawn >= 0.2):
            self._drawn = now
            width = shutil.get_terminal_size((100, 20)).columns - 1  # a wrapped line cannot be redrawn
            sys.stderr.write("\r" + self.line()[:width] + "\033[K")
            sys.stderr.flush()

    def event(self) -> dict[str, Any]:
        done = sum(f.finished for f in self.fits.values())
        active = [
            {"desc": f.label, "epoch": f.epoch, "epochs": f.epochs, "loss": f.loss, "valid": f.valid}
            for f in self.fits.values()
            if f.running
        ]
        first = active[0] if active else {"desc": "", "epoch": 0, "epochs": self.epochs, "loss": None, "valid": None}
        eta = self.eta()
        return {
            "phase": "train",
            "desc": ", ".join(f"{a['desc']} epoch {a['epoch']}/{a['epochs']}" for a in active) or "training",
            "fits_done": done,
            "fits": len(self.fits),
            "active": active,
            "fraction": round(self.fraction(), 4),
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round(time.monotonic() - self.started, 1),
            # The running fit first listed, in the shape kiln ui read before builds ran fits side by side.
            "fit": done + 1,
            "epoch": first["epoch"],
            "epochs": first["epochs"],
            "loss": first["loss"],
            "valid": first["valid"],
        }

    def line(self) -> str:
        e = self.event()
        frac = e["fraction"]
        eta = "" if e["eta_s"] is None else f"  ETA {_duration(e['eta_s'])}"
        return f"build [{'#' * int(30 * frac):<30}] {100 * frac:3.0f}%  fits {e['fits_done']}/{e['fits']}  {e['desc']}{eta}"

    def close(self) -> None:
        if self.show:
            sys.stderr.write("\n")
            sys.stderr.flush()


if __name__ == "__main__":
    # Under its own name, so what it sends back unpickles as datakiln.compile.fits classes.
    from datakiln.compile.fits import _serve as serve

    serve(int(sys.argv[1]))
