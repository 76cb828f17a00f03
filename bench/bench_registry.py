"""Side-by-side benchmark of the registry, serving and melding (issue 13), on the digits sample.

Figures, each with the 1-minute load average beside it:
- ``kiln install`` of a published package from a hub on loopback (a fresh cache), as a process;
- ``datakiln.load("OWNER/NAME@RANGE")`` of the installed package and a first prediction, in a
  fresh process (imports included), beside ``torch.load`` of the same weights + one forward pass;
- ``kiln serve`` under 16 concurrent clients (8x8 PNGs, multipart) beside the naive server
  (``bench/naive_serve.py``: FastAPI, one onnxruntime call per request), same load generator;
- meld: a backbone built on digits 0-4, fine-tuned on 5-9 with 20 labels a class, against the
  same architecture from scratch on the same labels, five seeds (and the same at a short schedule).

    python bench/bench_registry.py                 # everything (~6 min on 2 cores)
    python bench/bench_registry.py --skip-meld     # the registry and serving figures only
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import print_figures, save  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
KILN = [PY, "-m", "datakiln"]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed:\n{r.stdout[-1500:]}\n{r.stderr[-2000:]}")
    return dt, r.stdout


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A server process and its first stdout line (the one that names its URL)."""
    out = open(log, "w+b")
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "http://" not in line:
        out.seek(0)
        raise SystemExit(f"bench: {' '.join(args)} did not start: {line}{out.read().decode()[-2000:]}")
    return proc, line


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def digits_repo(root: Path, keep: set[str] | None, per_class: int | None, seed: int, env: dict[str, str]) -> Path:
    """The digits sample in ``root``, only the classes in ``keep``, ``per_class`` train labels a class."""
    script = f"""
import random, datakiln
r = datakiln.Repo.init({str(root)!r})
r.import_sample("digits", jobs=1)
rows = r.ls()
keep = {sorted(keep) if keep else None!r}
if keep:
    r.rm([x["id"] for x in rows if x["label"] not in keep])
per_class = {per_class!r}
if per_class:
    by = {{}}
    for x in rows:
        if (not keep or x["label"] in keep) and x["split"] == "train":
            by.setdefault(x["label"], []).append(x["id"])
    rng = random.Random({seed})
    r.label_many([(i, None) for ids in by.values() for i in rng.sample(ids, len(ids) - per_class)])
r.commit("bench subset")
"""
    run([PY, "-c", script], root.parent, env)
    return root


def registry_figures(work: Path, env: dict[str, str], r: dict[str, Any]) -> tuple[str, subprocess.Popen[bytes]]:
    hub_root = work / "hub"
    _, token = run([*KILN, "hub", "user", "add", "alice", "--admin", "--root", str(hub_root)], work, env)
    hub, line = start([*KILN, "hub", "serve", "--root", str(hub_root), "--port", "0"], work, env, work / "hub.log")
    url = line.split("at ", 1)[1].split()[0]
    run([*KILN, "login", url, "--token", token.strip().splitlines()[-1]], work, env)
    run([*KILN, "keygen"], work, env)
    repo = digits_repo(work / "digits", None, None, 0, env)
    run([*KILN, "build", "--folds", "0"], repo, env)
    run([*KILN, "publish", "latest", "alice/digits-cnn", "1.0.0", "--hub", url], repo, env)
    # A user with an empty cache installs it (the publisher's key trusted, as after `kiln trust`).
    user = {**env, "KILN_CACHE_HOME": str(work / "user-cache"), "KILN_HUB": url}
    times = []
    for i in range(5):
        shutil.rmtree(work / "user-cache", ignore_errors=True)
        app = work / f"app{i}"
        app.mkdir()
        dt, _ = run([*KILN, "install", "alice/digits-cnn@^1.0"], app, user)
        times.append(dt)
    r["install_s"], r["load"]["install_s"] = statistics.median(times), load()
    r["install_runs_s"] = [round(t, 3) for t in times]
    # Load + first prediction in a fresh process, imports included; beside torch.load + forward.
    png = work / "seven.png"
    subprocess.run(
        [*KILN, "cat", run([*KILN, "ls", "--label", "7"], repo, env)[1].split()[0]],
        cwd=repo,
        env=env,
        stdout=open(png, "wb"),
        check=True,
    )
    # Both scripts print (seconds with imports, seconds of the calls alone after the imports).
    load_script = f"""
import time; t = time.perf_counter()
import numpy, onnxruntime, PIL.Image, datakiln, datakiln.registry.install
t1 = time.perf_counter()
m = datakiln.load("alice/digits-cnn@^1.0")
label = m.predict([{str(png)!r}]).labels[0]
t2 = time.perf_counter()
print(t2 - t, t2 - t1, label)
"""
    package = next(p for p in (repo / ".kiln/builds").glob("*/package"))
    record = json.loads((package.parent / "build.json").read_text())
    pt = work / "weights.pt"
    export = f"""
import torch
from safetensors.torch import load_file
torch.save(load_file({str(package / "weights.safetensors")!r}), {str(pt)!r})
"""
    run([PY, "-c", export], work, env)
    torch_script = f"""
import time; t = time.perf_counter()
import numpy as np, torch
from PIL import Image
from datakiln.compile.models import Classifier
from datakiln.compile.spec import ModelSpec
t1 = time.perf_counter()
rec = {json.dumps({"arch": record["spec"]["model"], "input": record["input"], "resolved": record["resolved"], "k": len(record["classes"])})!r}
import json; rec = json.loads(rec)
spec = ModelSpec(**{{k: v for k, v in rec["arch"].items() if k in ("arch", "width", "depth", "dropout")}})
net = Classifier(spec, (rec["resolved"]["channels"], *rec["resolved"]["size"]), rec["k"], rec["input"]["mean"], rec["input"]["std"], rec["resolved"]["stem"])
net.load_state_dict(torch.load({str(pt)!r}, weights_only=True))
net.eval()
x = torch.from_numpy(np.asarray(Image.open({str(png)!r}).convert("L"), np.float32)[None, None] / 255)
with torch.no_grad():
    k = int(net(x).argmax(1))
t2 = time.perf_counter()
print(t2 - t, t2 - t1, k)
"""
    loads, torches = [], []
    for _ in range(5):
        loads.append([float(v) for v in run([PY, "-c", load_script], work / "app0", user)[1].split()[:2]])
        torches.append([float(v) for v in run([PY, "-c", torch_script], work, env)[1].split()[:2]])
    r["load_predict_s"] = statistics.median(x[1] for x in loads)
    r["load_predict_with_imports_s"] = statistics.median(x[0] for x in loads)
    r["torch_load_forward_s"] = statistics.median(x[1] for x in torches)
    r["torch_load_forward_with_imports_s"] = statistics.median(x[0] for x in torches)
    for k in (
        "load_predict_s",
        "load_predict_with_imports_s",
        "torch_load_forward_s",
        "torch_load_forward_with_imports_s",
    ):
        r["load"][k] = load()
    return url, hub


def serve_figures(work: Path, env: dict[str, str], r: dict[str, Any], seconds: float) -> None:
    import numpy as np
    from PIL import Image

    package = next(p for p in (work / "digits/.kiln/builds").glob("*/package"))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8)).astype(np.uint8), "L").save(buf, "PNG")
    b = "kilnbench"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + buf.getvalue()
        + f"\r\n--{b}--\r\n".encode()
    )
    (work / "body.bin").write_bytes(body)
    kind = f"multipart/form-data; boundary={b}"
    results: dict[str, list[dict[str, Any]]] = {"kiln": [], "naive": []}
    for round_ in range(2):  # alternate, so drift in the machine's load hits both
        for name in ("kiln", "naive") if round_ == 0 else ("naive", "kiln"):
            if name == "kiln":
                proc, line = start([*KILN, "serve", str(package), "--port", "0"], work, env, work / "serve.log")
                url = line.split(" at ", 1)[1].split()[0]
            else:
                port = 18000 + round_
                proc, line = start(
                    [PY, str(HERE / "naive_serve.py"), str(package), str(port)], work, env, work / "naive.log"
                )
                url = f"http://127.0.0.1:{port}"
                time.sleep(1.0)
            try:
                _, out = run(
                    [
                        PY,
                        str(HERE / "loadgen.py"),
                        f"{url}/predict",
                        str(work / "body.bin"),
                        kind,
                        "--clients",
                        "16",
                        "--seconds",
                        str(seconds),
                    ],
                    work,
                    env,
                )
                res = json.loads(out)
                res["load"] = load()
                results[name].append(res)
            finally:
                stop(proc)
    for name, runs in results.items():
        r[f"serve_{name}_rps"] = statistics.mean(x["rps"] for x in runs)
        r[f"serve_{name}_p99_ms"] = max(x["p99_ms"] for x in runs)
        r[f"serve_{name}_errors"] = sum(x["errors"] for x in runs)
        r["load"][f"serve_{name}_rps"] = max(x["load"] for x in runs)
    r["serve_runs"] = results
    r["serve_ratio"] = r["serve_kiln_rps"] / r["serve_naive_rps"]


def meld_figures(work: Path, env: dict[str, str], url: str, r: dict[str, Any], seeds: int) -> None:
    low = digits_repo(work / "low", {"0", "1", "2", "3", "4"}, None, 0, env)
    out: dict[str, list[float]] = {"meld": [], "scratch": [], "meld_short": [], "scratch_short": []}
    for seed in range(seeds):
        run([*KILN, "build", "--folds", "0", "--seed", str(seed)], low, env)
        run([*KILN, "publish", "latest", "alice/digits04", f"1.0.{seed}", "--hub", url], low, env)
        high = digits_repo(work / f"high{seed}", {"5", "6", "7", "8", "9"}, 20, seed, env)
        for name, extra in (("", []), ("_short", ["--epochs", "5"])):
            (high / "kiln.toml").unlink(missing_ok=True)
            _, s = run([*KILN, "build", "--folds", "0", "--cold", "--seed", str(seed), *extra, "--json"], high, env)
            out[f"scratch{name}"].append(json.loads(s)["metrics"]["test"]["accuracy"])
            (high / "kiln.toml").write_text(f'[model]\nbackbone = "alice/digits04@1.0.{seed}"\n[train]\nfolds = 0\n')
            _, s = run([*KILN, "build", "--seed", str(seed), *extra, "--json"], high, env)
            out[f"meld{name}"].append(json.loads(s)["metrics"]["test"]["accuracy"])
        print(
            f"  seed {seed}: scratch {out['scratch'][-1]:.3f} meld {out['meld'][-1]:.3f}  (short: "
            f"{out['scratch_short'][-1]:.3f} / {out['meld_short'][-1]:.3f})  load {load()}",
            flush=True,
        )
    r["meld"] = out
    r["meld_gain_pts"] = 100 * (statistics.mean(out["meld"]) - statistics.mean(out["scratch"]))
    r["meld_short_gain_pts"] = 100 * (statistics.mean(out["meld_short"]) - statistics.mean(out["scratch_short"]))
    r["load"]["meld_gain_pts"] = load()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/bench-registry")
    p.add_argument("--seconds", type=float, default=10, help="seconds of load per serving run")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--skip-meld", action="store_true")
    a = p.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "KILN_JOBS": "1",
        "KILN_PROGRESS": "0",
        "KILN_CONFIG_HOME": str(work / "config"),
        "KILN_CACHE_HOME": str(work / "cache"),
    }
    env.pop("KILN_TOKEN", None)
    r: dict[str, Any] = {"date": str(date.today()), "cpus": os.cpu_count(), "load": {}}
    print(f"load before: {load()}")
    url, hub = registry_figures(work, env, r)
    try:
        print(
            f"install {r['install_s']:.3f} s; load+predict {r['load_predict_s']:.3f} s "
            f"({r['load_predict_with_imports_s']:.3f} s with imports) vs torch {r['torch_load_forward_s']:.3f} s "
            f"({r['torch_load_forward_with_imports_s']:.3f} s)"
        )
        serve_figures(work, env, r, a.seconds)
        print(f"serve {r['serve_kiln_rps']:.0f} rps vs naive {r['serve_naive_rps']:.0f} rps ({r['serve_ratio']:.2f}x)")
        if not a.skip_meld:
            meld_figures(work, env, url, r, a.seeds)
    finally:
        stop(hub)
    rows = [
        (f"kiln install, fresh cache, s (load {r['load']['install_s']})", r["install_s"], "<=", 1.0),
        (f"datakiln.load + first predict, s (load {r['load']['load_predict_s']})", r["load_predict_s"], "<=", 0.3),
        ("  anchor: torch.load + forward, s", r["torch_load_forward_s"], ">=", 0),
        ("  the same in a fresh process, imports included, s", r["load_predict_with_imports_s"], "<=", 1.0),
        ("  anchor with imports (import torch), s", r["torch_load_forward_with_imports_s"], ">=", 0),
        (f"serve throughput / naive, 16 clients (load {r['load']['serve_kiln_rps']})", r["serve_ratio"], ">=", 3.0),
        ("  kiln serve rps", r["serve_kiln_rps"], ">=", 0),
        ("  naive server rps", r["serve_naive_rps"], ">=", 0),
        ("kiln serve p99 ms", r["serve_kiln_p99_ms"], "<=", 50),
        ("serve errors (both)", r["serve_kiln_errors"] + r["serve_naive_errors"], "<=", 0),
    ]
    if not a.skip_meld:
        rows += [
            (
                f"meld - scratch, test points, 20 labels/class (load {r['load']['meld_gain_pts']})",
                r["meld_gain_pts"],
                ">=",
                10,
            ),
            ("  same, 5-epoch schedule", r["meld_short_gain_pts"], ">=", 0),
        ]
    ok = print_figures(f"registry, serving and meld figures ({r['cpus']} CPUs)", rows, width=66)
    print(f"\nresults: {save('registry', r)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
