"""``kiln keygen``, ``trust``, ``publish``, ``install``, ``packages`` and ``package info``: the
registry's commands, thin over ``datakiln.registry``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from .base import command, out_json, repo


def _hub_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hub", help="the hub's address (default: $KILN_HUB, this repository's remote, or your one login)")


def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="replace an existing key (packages it signed stay valid)")


@command("keygen", "kiln keygen", _keygen_args)
def cmd_keygen(a: argparse.Namespace) -> None:
    from ..registry import keys

    k = keys.keygen(force=a.force)
    print(f"wrote {k['path']} (keep it private) and {k['path']}.pub")
    print(f"key {k['key_id']}: {k['public']}")
    print("'kiln publish' registers it on the hub the first time it signs a package there")


def _trust_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("publisher", help="the hub user whose packages to trust")
    p.add_argument("key", nargs="?", help="the key id to trust (default: the publisher's only key)")
    _hub_arg(p)


@command("trust", "kiln trust alice 3f2a9c01d4e5b6a7", _trust_args)
def cmd_trust(a: argparse.Namespace) -> None:
    from ..registry import default_hub, keys
    from ..registry.client import Registry

    hub = default_hub(a.hub, Path(a.C))
    with Registry(hub) as reg:
        found = reg.keys(a.publisher)
    if a.key is None and len(found) != 1:
        listed = ", ".join(found) or "none"
        raise InputError(f"{a.publisher} has {len(found)} keys on {hub} ({listed}); name the one to trust")
    kid = a.key or next(iter(found))
    if kid not in found or keys.key_id(found[kid]) != kid:
        raise InputError(f"{hub} lists no key {kid} for {a.publisher}; its keys: {', '.join(found) or 'none'}")
    keys.trust(found[kid], a.publisher, note=f"kiln trust, from {hub}")
    print(f"trusting {a.publisher}'s key {kid} for packages {a.publisher} publishes")


def _publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", help="build id or prefix ('kiln builds' lists them)")
    p.add_argument("name", help="OWNER/NAME to publish as (OWNER: you, unless you are a hub admin)")
    p.add_argument("version", help="semver version, e.g. 1.2.0; versions never change once published")
    p.add_argument("--force", action="store_true", help="publish a build that fails its [expect] checks (recorded)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _hub_arg(p)


@command("publish", "kiln publish 3f2a alice/digits-cnn 1.2.0", _publish_args)
def cmd_publish(a: argparse.Namespace) -> None:
    from ..compile.builder import default_spec
    from ..compile.expect import ensure
    from ..compile.records import find_build
    from ..registry import default_hub, publish

    r = repo(a)
    b = find_build(r, a.build)
    hub = default_hub(a.hub, Path(a.C))
    expect = ensure(r, b, default_spec(r).expect)  # the [expect] of kiln.toml, measured if not yet
    t0 = time.perf_counter()
    result = publish(b.package, a.name, a.version, hub, expect=expect, force=a.force)
    if a.json:
        out_json(result)
        return
    print(
        f"published {result['name']} {result['version']} to {hub} ({result['size']:,} bytes, sha256 "
        f"{result['sha256'][:12]}, signed with key {result['key']}) in {time.perf_counter() - t0:.2f} s"
    )
    print(f"install it elsewhere: kiln install {result['name']}@^{result['version']}")


def _install_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "packages", nargs="*", help="OWNER/NAME@RANGE (^1.2, ~1.2.3, >=1,<2, 1.2.0); none: what kiln.lock pins"
    )
    p.add_argument("--trust", action="store_true", help="trust a publisher's key the first time it is seen")
    p.add_argument("--json", action="store_true", help="print what was installed as JSON")
    _hub_arg(p)


@command("install", "kiln install alice/digits-cnn@^1.2", _install_args)
def cmd_install(a: argparse.Namespace) -> None:
    from dataclasses import asdict

    from ..registry import LOCK_FILE, find_lock, install

    t0 = time.perf_counter()
    done = install(a.packages, project=Path(a.C), hub=a.hub, trust=a.trust)
    if a.json:
        out_json([{**asdict(i.locked), "path": str(i.path), "downloaded": i.downloaded} for i in done])
        return
    for i in done:
        how = "downloaded" if i.downloaded else "cached"
        print(f"{i.locked.name} {i.locked.version}  sha256 {i.locked.sha256[:12]}  {how}  by {i.locked.publisher}")
    lock = find_lock(Path(a.C)) or Path(a.C) / LOCK_FILE
    print(f"{len(done)} package{'s' * (len(done) != 1)} in {time.perf_counter() - t0:.2f} s; pinned in {lock}")


def _packages_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--installed", action="store_true", help="list the packages in your cache instead of the hub's")
    p.add_argument("--json", action="store_true", help="print JSON")
    _hub_arg(p)


@command("packages", "kiln packages", _packages_args)
def cmd_packages(a: argparse.Namespace) -> None:
    from ..registry import Cache, default_hub
    from ..registry.client import Registry

    if a.installed:
        rows = Cache().records()
        if a.json:
            out_json(rows)
            return
        for r in rows:
            print(f"{r['name']:<32} {r['version']:<12} sha256 {r['sha256'][:12]}  from {r['hub']}")
        if not rows:
            print("no packages installed; 'kiln install OWNER/NAME@RANGE' installs one")
        return
    hub = default_hub(a.hub, Path(a.C))
    with Registry(hub) as reg:
        rows = reg.packages()
    if a.json:
        out_json(rows)
        return
    print(f"{'package':<32} {'latest':<12} {'versions':>8} {'downloads':>10}")
    for r in rows:
        print(f"{r['full_name']:<32} {r['latest'] or '-':<12} {r['versions']:>8} {r['downloads']:>10}")
    if not rows:
        print(f"no packages on {hub} yet; 'kiln publish BUILD OWNER/NAME VERSION' publishes one")


def package_info(a: argparse.Namespace, ref_text: str) -> None:
    """``kiln package info OWNER/NAME[@RANGE]``: versions, metrics, lineage and card."""
    from ..registry import default_hub, parse_ref
    from ..registry.client import Registry
    from ..registry.install import choose

    ref = parse_ref(ref_text)
    hub = ref.hub or default_hub(a.hub, Path(a.C))
    with Registry(hub) as reg:
        info = reg.info(ref.owner, ref.name)
    chosen = choose(info, ref)
    if a.json:
        out_json({**info, "chosen": chosen["version"]})
        return
    print(f"{info['name']} on {hub}: {len(info['versions'])} versions, {info['downloads']} downloads")
    for v in info["versions"]:
        mark = "*" if v["version"] == chosen["version"] else " "
        acc = (v.get("metrics") or {}).get("test", {}).get("accuracy")
        print(
            f" {mark} {v['version']:<12} {time.strftime('%Y-%m-%d', time.gmtime(v['created']))}  "
            f"test accuracy {_pct(acc)}  by {v['publisher']} (key {v['key']})  sha256 {v['sha256'][:12]}"
        )
    print()
    print(card(chosen))


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "-"


def card(v: dict[str, Any]) -> str:
    """A version's model card in plain text, from its manifest."""
    contract, lineage, arch = v.get("input") or {}, v.get("lineage") or {}, v.get("architecture") or {}
    lines = [
        f"version {v['version']}",
        f"classes ({len(v.get('classes') or [])}): {', '.join(map(str, (v.get('classes') or [])[:20]))}",
        f"input: {contract.get('color')} {contract.get('size')} ({contract.get('layout')}, {contract.get('scale')}, "
        f"{contract.get('resize')} resize)",
        f"architecture: {arch.get('arch')} width {arch.get('width')} depth {arch.get('depth')}, "
        f"embedding {arch.get('embedding_dim')}",
        f"metrics: valid {_pct((v.get('metrics') or {}).get('valid', {}).get('accuracy'))}, "
        f"test {_pct((v.get('metrics') or {}).get('test', {}).get('accuracy'))}",
        f"lineage: repository {lineage.get('repo')}, commit {str(lineage.get('commit'))[:12]}, build "
        f"{lineage.get('build')}, datakiln {lineage.get('datakiln')}",
    ]
    for dep in v.get("dependencies") or []:
        lines.append(f"built on: {dep.get('name')} {dep.get('version')} (sha256 {str(dep.get('sha256'))[:12]})")
    expect = v.get("expect")
    if expect:
        state = (
            "passed"
            if expect.get("passed")
            else ("FAILED, published with --force" if expect.get("forced") else "failed")
        )
        lines.append(f"expectations: {state}")
    return "\n".join(lines)
