"""The hub's web pages in headless Chromium (Debian's /usr/bin/chromium), against a real hub.

Screenshots land in ``test-artifacts/hub/`` (or ``$KILN_ARTIFACTS/hub``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import datakiln
from tests.conftest import CHROMIUM
from tests.test_hub import _clone, _hub_repo, _publish

ARTIFACTS = Path(os.environ.get("KILN_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")) / "hub"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install -y chromium); the README's test command installs it",
)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _request_with_conflict(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> tuple[datakiln.Repo, list[str]]:
    """alice/digits with request #1 (fix-cats: two relabels, one of them conflicting with main)."""
    url = _publish(hub, digits, "alice/digits", "--private")
    work = _clone(hub, url, tmp_path / "w")
    ids = work.table().ids
    work.checkout("fix-cats", create=True)
    work.label(ids[1], "7")
    work.label(ids[2], "5")
    work.commit("fix two")
    hub.kiln("push", "origin", "fix-cats", cwd=work.root)
    work.checkout("main")
    work.label(ids[2], "6")
    work.commit("main relabels the same example")
    hub.kiln("push", cwd=work.root)
    hub.kiln("request", "open", "--from", "fix-cats", "-m", "fix two digits", cwd=work.root)
    return work, ids


def test_pages_sign_in_browse_and_merge_a_change_request(
    hub: Any, digits: datakiln.Repo, tmp_path: Path, browser: Any
) -> None:
    work, ids = _request_with_conflict(hub, digits, tmp_path)
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # A visitor sees no private repository and no repository page (404, not 403).
    page.goto(hub.url + "/")
    assert "alice/digits" not in page.content()
    assert page.goto(hub.url + "/alice/digits").status == 404
    page.goto(hub.url + "/login")
    page.fill("input[name=token]", hub.token)
    page.click("form.card button")
    page.wait_for_url(hub.url + "/")
    assert page.locator("a", has_text="alice/digits").count() == 1
    shot(page, "repositories")
    page.click("text=alice/digits")
    assert page.locator("svg.chart rect").count() == 10
    assert page.locator(".gallery img").count() == 60
    page.wait_for_load_state("networkidle")
    assert page.evaluate("Array.from(document.images).slice(0, 12).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("text=fix-cats").count() >= 1
    shot(page, "repository")
    page.click("text=main relabels the same example")
    assert page.locator("li.change").count() == 1 and page.locator(".new", has_text="6").count() == 1
    shot(page, "commit")
    page.goto(hub.url + "/alice/digits/requests/1")
    assert page.locator("li.conflict").count() == 1 and ids[2] in page.content()
    page.fill("textarea[name=body]", "the 6 on main is right; take it")
    page.click("form.card button")
    assert page.locator("ul.comments li", has_text="the 6 on main is right").count() == 1
    page.click("button:has-text('Approve')")
    assert page.locator(".good", has_text="Approved by alice").count() == 1
    page.click("#merge")
    assert page.locator(".note", has_text="conflict").count() == 1 and ids[2][:12] in page.content()
    shot(page, "request-conflict")
    before = _hub_repo(hub).resolve("main")
    assert _hub_repo(hub).resolve("main") == before
    # Settle it on the branch the way a user would (take main's label), push, merge from the page.
    hub.kiln("checkout", "fix-cats", cwd=work.root)
    hub.kiln("fetch", cwd=work.root)
    hub.kiln("merge", "origin/main", "--theirs", cwd=work.root)
    hub.kiln("push", "origin", "fix-cats", cwd=work.root)
    page.goto(hub.url + "/alice/digits/requests/1")
    assert page.locator("li.conflict").count() == 0
    page.click("#merge")
    page.wait_for_selector(".state.merged")
    shot(page, "request-merged")
    table = _hub_repo(hub).table("main")
    assert table.label_of(ids[1])[0] == "7" and table.label_of(ids[2])[0] == "6"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    ctx.close()
    assert not errors
