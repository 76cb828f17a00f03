"""The registry's web pages: every package, and a package's page with its versions, its model
card (generated from the manifest: classes, input contract, metrics per class and slice,
lineage, build spec, backbone, expectations), download counts, and a "try it" form that
predicts an uploaded image with the package (onnxruntime, on the hub). No script, as the other
pages (``hub.pages``): the form posts multipart and the answer is a page.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import BadImage, InputError, KilnError
from ..package import Model, load
from .hub import Hub
from .meta import Token
from .pages import e, guarded, page, same_origin, viewer, when
from .registry import blob_path, latest, one_version, public_version

TRY_MAX = 4 << 20  # bytes of an image sent to "try it"
MODELS_OPEN = 8  # packages kept loaded for "try it"

_models: OrderedDict[str, Model] = OrderedDict()
_models_lock = threading.Lock()  # held while a package loads: N visitors never load N copies
_slots = threading.BoundedSemaphore(2)  # "try it" predictions at once: the hub serves repositories first


def _model(hub: Hub, sha: str) -> Model:
    """The package stored under ``sha``, verified once and kept (an LRU of a few)."""
    with _models_lock:
        if sha in _models:
            _models.move_to_end(sha)
            return _models[sha]
        model = load(blob_path(hub, sha))
        _models[sha] = model
        while len(_models) > MODELS_OPEN:
            _models.popitem(last=False)
        return model


def _try(hub: Hub, sha: str, data: bytes) -> tuple[Model, Any]:
    """(the model, its probabilities for the image), a couple of visitors at a time."""
    if not _slots.acquire(timeout=10):
        raise InputError("the hub is busy trying other images; try again in a moment")
    try:
        model = _model(hub, sha)
        return model, model.predict([data]).probs[0]
    finally:
        _slots.release()


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "—"


def packages_page(hub: Hub, request: Request, who: Token | None) -> Response:
    rows = "".join(
        f'<tr><td><a href="/packages/{e(p["owner"])}/{e(p["name"])}">{e(p["owner"])}/{e(p["name"])}</a></td>'
        f"<td>{e(latest(hub.meta.versions(p['owner'], p['name'])) or '—')}</td><td>{p['versions']}</td>"
        f"<td>{p['downloads']}</td><td>{when(p['updated'])}</td></tr>"
        for p in hub.meta.packages()
    )
    body = (
        "<h1>Packages</h1><p class=muted>Model packages published with <code>kiln publish</code>; install one with "
        "<code>kiln install OWNER/NAME@RANGE</code>.</p>"
        '<table class="counts"><tr><th>package</th><th>latest</th><th>versions</th><th>downloads</th><th>updated</th></tr>'
        f"{rows or '<tr><td colspan=5>None yet.</td></tr>'}</table>"
    )
    return page("packages", body, who)


def package_page(
    hub: Hub, request: Request, who: Token | None, owner: str, name: str, version: str | None, tried: str = ""
) -> Response:
    rows = hub.meta.versions(owner, name)
    chosen = version or latest(rows)
    if chosen is None:
        one_version(hub, owner, name, "0.0.0")  # raises PackageNotFound with the right message
    v = public_version(one_version(hub, owner, name, str(chosen)), manifest=True)
    full = f"{owner}/{name}"
    versions = "".join(
        f'<tr><td><a href="/packages/{e(owner)}/{e(name)}?version={quote(r["version"])}">{e(r["version"])}</a>'
        f"{' <b>◀</b>' if r['version'] == v['version'] else ''}</td><td>{when(r['created'])}</td>"
        f"<td>{e(r['publisher'])}</td><td><code>{e(r['sha256'][:12])}</code></td><td>{r['downloads']}</td></tr>"
        for r in reversed(rows)
    )
    body = (
        f"<h1>{e(full)} <span class=badge>{e(v['version'])}</span></h1>"
        f"<p><code>kiln install {e(full)}@{e(v['version'])}</code> · "
        f"<code>datakiln.load(&quot;{e(full)}@^{e(v['version'])}&quot;)</code> · "
        f"{sum(r['downloads'] for r in rows)} downloads</p>"
        f'<div class="cols"><section>{card(v)}</section><section>{try_form(owner, name, v, tried)}'
        f'<h2>Versions</h2><table class="counts"><tr><th>version</th><th>published</th><th>by</th><th>sha256</th>'
        f"<th>downloads</th></tr>{versions}</table></section></div>"
    )
    return page(full, body, who)


def card(v: dict[str, Any]) -> str:
    """The model card, from the manifest alone."""
    m = v["manifest"]
    contract, lineage, arch = m.get("input") or {}, m.get("lineage") or {}, m.get("architecture") or {}
    metrics = m.get("metrics") or {}
    out = [
        "<h2>Model card</h2>",
        f"<p>Published by <b>{e(v['publisher'])}</b> on {when(v['created'])}, signed with key "
        f"<code>{e(v['key'])}</code>. sha256 <code>{e(v['sha256'])}</code>, {v['size']:,} bytes.</p>",
        f"<h3>Classes ({len(m.get('classes') or [])})</h3><p>{', '.join(e(c) for c in (m.get('classes') or [])[:200])}</p>",
        "<h3>Input</h3>",
        f"<p>{e(contract.get('color'))} images resized ({e(contract.get('resize'))}) to {e(contract.get('size'))} "
        f"(height, width), {e(contract.get('layout'))} {e(contract.get('dtype'))} = {e(contract.get('scale'))}; "
        f"normalised inside the network (mean {e(contract.get('mean'))}, std {e(contract.get('std'))}).</p>",
        f"<h3>Architecture</h3><p>{e(arch.get('arch'))}, width {e(arch.get('width'))}, depth {e(arch.get('depth'))}, "
        f"stem {e(arch.get('stem'))}, embedding {e(arch.get('embedding_dim'))}. Weights in safetensors, "
        "graph in ONNX; no code.</p>",
        f"<h3>Metrics</h3><p>valid {_pct((metrics.get('valid') or {}).get('accuracy'))} "
        f"(n={e((metrics.get('valid') or {}).get('n'))}), test {_pct((metrics.get('test') or {}).get('accuracy'))} "
        f"(n={e((metrics.get('test') or {}).get('n'))})</p>",
        _per_class(m),
        _slices(m),
        "<h3>Lineage</h3>",
        f"<p>dataset repository <code>{e(lineage.get('repo'))}</code>, commit <code>{e(lineage.get('commit'))}</code>, "
        f"build <code>{e(lineage.get('build'))}</code>, datakiln {e(lineage.get('datakiln'))}.</p>",
    ]
    for dep in m.get("dependencies") or []:
        out.append(
            f'<p>Built on <a href="/packages/{e(dep.get("name"))}?version={quote(str(dep.get("version")))}">'
            f"{e(dep.get('name'))} {e(dep.get('version'))}</a> (sha256 <code>{e(str(dep.get('sha256'))[:12])}</code>).</p>"
        )
    out.append(f"<details><summary>Build spec</summary><pre>{e(json.dumps(m.get('spec'), indent=2))}</pre></details>")
    out.append(_expectations(m.get("expect")))
    return "".join(out)


def _per_class(m: dict[str, Any]) -> str:
    pc = (m.get("metrics") or {}).get("per_class")
    if not pc:
        return ""
    rows = "".join(
        f"<tr><td>{e(c['class'])}</td><td>{_pct(c.get('precision'))}</td><td>{_pct(c.get('recall'))}</td>"
        f"<td>{e(c.get('support'))}</td></tr>"
        for c in pc["classes"]
    )
    return (
        f'<h3>Per class ({e(pc["split"])})</h3><table class="counts"><tr><th>class</th><th>precision</th>'
        f"<th>recall</th><th>n</th></tr>{rows}</table>"
    )


def _slices(m: dict[str, Any]) -> str:
    slices = (m.get("metrics") or {}).get("slices") or []
    rows = "".join(
        f"<tr><td>{e(s['slice'])}</td><td>{_pct(s['accuracy'])}</td><td>{e(s['n'])}</td></tr>"
        for s in slices
        if not str(s["slice"]).startswith(("split=", "label="))
    )
    if not rows:
        return ""
    return f'<h3>Slices (out-of-sample)</h3><table class="counts"><tr><th>slice</th><th>accuracy</th><th>n</th></tr>{rows}</table>'


def _expectations(ex: dict[str, Any] | None) -> str:
    if not ex:
        return "<h3>Expectations</h3><p class=muted>None were stated for this build.</p>"
    state = "passed" if ex.get("passed") else ("failed; published with --force" if ex.get("forced") else "failed")
    rows = "".join(
        f"<tr><td>{e(c['name'])}</td><td>{e(c['measured'])}</td><td>{e(c['op'])} {e(c['limit'])}</td>"
        f"<td class={'good' if c['passed'] else 'bad'}>{'ok' if c['passed'] else 'FAIL'}</td></tr>"
        for c in ex.get("checks", [])
    )
    css = "good" if ex.get("passed") else "bad"
    return (
        f'<h3>Expectations: <span class="{css}">{e(state)}</span></h3><table class="counts"><tr><th>check</th>'
        f"<th>measured</th><th>limit</th><th></th></tr>{rows}</table>"
    )


def try_form(owner: str, name: str, v: dict[str, Any], tried: str) -> str:
    action = f"/packages/{quote(owner)}/{quote(name)}/{quote(v['version'])}/try"
    return (
        '<h2>Try it</h2><form method="post" enctype="multipart/form-data" class="card" '
        f'action="{e(action)}"><label>An image <input type="file" name="image" accept="image/*" required></label>'
        '<button class="primary">Predict</button></form>' + tried
    )


def prediction_html(model: Model, filename: str, probs: Any) -> str:
    order = sorted(range(len(probs)), key=lambda k: -float(probs[k]))[:5]
    bars = "".join(
        f'<g transform="translate(0,{i * 22})"><text x="0" y="15">{e(model.classes[k])}</text>'
        f'<rect x="120" y="3" width="{max(1, int(300 * float(probs[k])))}" height="16"></rect>'
        f'<text x="{128 + int(300 * float(probs[k]))}" y="15">{100 * float(probs[k]):.1f}%</text></g>'
        for i, k in enumerate(order)
    )
    return (
        f'<div class="card" id="prediction"><p>{e(filename)}: <b class="label">{e(model.classes[order[0]])}</b></p>'
        f'<svg class="chart" width="480" height="{22 * len(order)}">{bars}</svg></div>'
    )


async def _uploaded(request: Request) -> tuple[str, bytes]:
    from ..serve.app import parse_multipart

    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > TRY_MAX:
            raise InputError(f"the image is over {TRY_MAX:,} bytes; try a smaller one")
    parts = parse_multipart(bytes(body), request.headers.get("content-type", ""))
    files = [(filename or "image", data) for field, filename, data in parts if field == "image" and data]
    if not files:
        raise InputError("choose an image to try")
    return files[0]


def add_routes(app: FastAPI, hub: Hub) -> None:
    @app.get("/packages")
    def packages(request: Request) -> Response:
        return guarded(hub, packages_page)(request)

    @app.get("/packages/{owner}/{name}")
    def package(owner: str, name: str, request: Request, version: str | None = None) -> Response:
        return guarded(hub, package_page)(request, owner=owner, name=name, version=version)

    @app.post("/packages/{owner}/{name}/{version}/try")
    async def try_it(owner: str, name: str, version: str, request: Request) -> Response:
        who = viewer(hub, request)
        try:
            same_origin(request)
            filename, data = await _uploaded(request)
            row = one_version(hub, owner, name, version)
            try:
                model, probs = await run_in_threadpool(_try, hub, row["sha256"], data)
                tried = prediction_html(model, filename, probs)
            except BadImage as err:
                tried = f'<p class="bad" id="prediction">{e(err)}</p>'
            return await run_in_threadpool(package_page, hub, request, who, owner, name, version, tried)
        except KilnError as err:
            from .app import status_of

            return page("error", f'<h1>{status_of(err)}</h1><p class="bad">{e(err)}</p>', who, status_of(err))
