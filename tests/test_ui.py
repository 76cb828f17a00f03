"""The real UI: Debian's Chromium, driven by Playwright, against a real ``kiln ui`` process.

Screenshots of every page land in ``test-artifacts/ui/`` (or ``$KILN_ARTIFACTS/ui``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARGS, CHROMIUM, UIServer, kiln_json

pytestmark = pytest.mark.slow  # a browser, a fresh install: not the inner loop

ARTIFACTS = Path(os.environ.get("KILN_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")) / "ui"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install -y chromium); the README's test command installs it",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _page(browser: Any, width: int, height: int) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": width, "height": height})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from _page(browser, 1280, 800)


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A phone-sized screen: the 390x844 of the new-user trial that found the nav cut off."""
    yield from _page(browser, 390, 844)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def drawn(page: Any) -> None:
    """Wait until the app has drawn the page of the current URL (it sets main's data-url)."""
    page.wait_for_function("() => document.getElementById('main').dataset.url === location.pathname + location.search")


def wait_saved(page: Any) -> None:
    page.wait_for_function("() => document.getElementById('save-state').className === 'saved'")


def current(page: Any, sel: str) -> str:
    return str(page.locator(sel).get_attribute("data-id"))


def next_item(page: Any, sel: str, before: str) -> None:
    """Wait until the queue shows another example (or is done)."""
    page.wait_for_function(
        "([sel, id]) => { const el = document.querySelector(sel); return !el || el.dataset.id !== id; }",
        arg=[sel, before],
    )


def images_loaded(page: Any, sel: str) -> int:
    """How many images under ``sel`` decoded (naturalWidth > 0) after they all settle."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{sel} img')].every(i => i.complete)",
    )
    return int(
        page.evaluate(f"() => [...document.querySelectorAll('{sel} img')].filter(i => i.naturalWidth > 0).length")
    )


def test_the_loop_by_keyboard(ui_server: UIServer, page: Any) -> None:
    """Label 3 in the labelling queue, accept 2 in the review queue, commit, see it in History,
    open a confusion-matrix cell as a filtered gallery."""
    url = ui_server.url
    page.goto(url + "/label")
    page.wait_for_selector("#queue-empty")
    shot(page, "label-empty")
    page.keyboard.press("Enter")  # "Choose examples" (20, auto)
    page.wait_for_selector("#label-item")
    shot(page, "label-queue")
    labelled = []
    for key in ("Enter", "7", "Enter"):  # confirm the suggestion, pick class 7, confirm again
        eid = current(page, "#label-item")
        suggestion = page.locator("#suggestion").inner_text()
        page.keyboard.press(key)
        next_item(page, "#label-item", eid)
        wait_saved(page)
        labelled.append((eid, suggestion if key == "Enter" else "7"))

    page.goto(url + "/review")
    page.wait_for_selector("#review-item")
    shot(page, "review-queue")
    accepted = []
    for _ in range(2):
        eid = current(page, "#review-item")
        suggested = page.locator("#suggested").inner_text()
        page.keyboard.press("a")
        next_item(page, "#review-item", eid)
        wait_saved(page)
        accepted.append((eid, suggested))

    status = kiln_json("diff", cwd=ui_server.root)
    staged = {r["id"]: r["new"] for r in status["relabeled"]}
    assert staged == dict(labelled + accepted)

    page.goto(url + "/changes")
    page.wait_for_selector("#edits")
    assert page.locator("#edits tr[data-id]").count() == 5
    assert images_loaded(page, "#edits") == 5
    shot(page, "changes")
    page.fill("#commit-message", "label 3 from the queue, fix 2 suspected errors")
    page.click("#commit")
    page.wait_for_url(re.compile(r"/history/[0-9a-f]{64}$"))
    drawn(page)
    assert (
        page.locator("#diff-counts").inner_text().startswith("0 added, 0 removed, 5 relabeled (3 had no label before")
    )
    assert images_loaded(page, "#diff-relabeled") == 5
    shot(page, "commit")
    head = kiln_json("log", "-n", "1", cwd=ui_server.root)[0]
    assert head["message"] == "label 3 from the queue, fix 2 suspected errors"
    assert page.url.endswith(head["id"])

    page.goto(url + "/history")
    page.wait_for_selector("#log")
    assert "label 3 from the queue" in page.locator("#log").inner_text()
    shot(page, "history")

    page.goto(url + "/builds")
    page.wait_for_selector("#build-list")
    shot(page, "builds")
    page.locator("#build-list a").first.click()
    page.wait_for_selector("#confusion")
    page.wait_for_selector("#map")
    shot(page, "report")
    # The fullest off-diagonal cell, else the fullest cell.
    cells = page.locator("#confusion td.cell a")
    counts = [int(cells.nth(i).inner_text()) for i in range(cells.count())]
    off = [i for i in range(cells.count()) if "off" in (cells.nth(i).locator("xpath=..").get_attribute("class") or "")]
    pick = max(off or range(len(counts)), key=lambda i: counts[i])
    td = cells.nth(pick).locator("xpath=..")
    given, predicted = td.get_attribute("data-given"), td.get_attribute("data-predicted")
    cells.nth(pick).click()
    page.wait_for_url(re.compile(r"/gallery\?"))
    drawn(page)
    assert f"given={given}" in page.url and f"predicted={predicted}" in page.url
    assert page.locator("#gallery-count").inner_text().endswith(f"of {counts[pick]}")
    assert page.locator("#gallery-grid .card").count() == counts[pick]
    shot(page, "gallery-filtered")


def test_gallery_filters_and_detail(ui_server: UIServer, page: Any) -> None:
    page.goto(ui_server.url + "/gallery")
    page.wait_for_selector("#gallery-grid .card")
    assert page.locator("#gallery-count").inner_text() == "1–100 of 1,797"
    assert images_loaded(page, "#gallery-grid") == 100
    shot(page, "gallery")
    page.check("input[name=issue]")
    page.wait_for_url(re.compile(r"issue=1"))
    drawn(page)
    n_issue = page.locator("#gallery-grid .card").count()
    assert 0 < n_issue == page.locator("#gallery-grid .card.issue").count()
    page.select_option("select[name=sort]", "issue")
    page.wait_for_url(re.compile(r"sort=issue"))
    drawn(page)
    page.locator("#gallery-grid .card").first.click()
    page.wait_for_url(re.compile(r"/example/"))
    drawn(page)
    assert "suspected label error #1" in page.inner_text("main")
    shot(page, "example")
    first = page.url
    page.keyboard.press("ArrowRight")  # the next suspect of the same gallery page
    page.wait_for_function(f"() => location.href !== '{first}'")
    drawn(page)  # the URL changes before the page draws
    assert "suspected label error #2" in page.inner_text("main")
    page.keyboard.press("Escape")  # back to the gallery, filters kept
    page.wait_for_url(re.compile(r"/gallery\?.*issue=1.*sort=issue|/gallery\?.*sort=issue.*issue=1"))
    page.goto(ui_server.url + "/gallery?unlabeled=1")
    page.wait_for_selector("#gallery-grid .card")
    assert page.locator("#gallery-count").inner_text() == "1–40 of 40"


def test_review_undo_and_keep(ui_server: UIServer, page: Any) -> None:
    page.goto(ui_server.url + "/review")
    page.wait_for_selector("#review-item")
    first = current(page, "#review-item")
    page.keyboard.press("k")  # keep the given label
    next_item(page, "#review-item", first)
    wait_saved(page)
    page.keyboard.press("u")  # undo: back to the first suspect, nothing staged
    page.wait_for_function(f"() => document.querySelector('#review-item').dataset.id === '{first}'")
    wait_saved(page)
    assert kiln_json("status", cwd=ui_server.root)["staged"]["relabeled"] == 0
    page.keyboard.press("5")  # relabel as class 5 by digit key
    next_item(page, "#review-item", first)
    wait_saved(page)
    assert kiln_json("diff", cwd=ui_server.root)["relabeled"][0]["id"] == first


def test_start_a_build_with_live_progress(ui_server: UIServer, page: Any) -> None:
    page.goto(ui_server.url + "/builds")
    page.wait_for_selector("#start-build")
    page.fill("input[name=epochs]", "12")
    page.fill("input[name=folds]", "0")
    page.click("#start-build")
    page.wait_for_selector("#job .progress")
    # One display for the whole build: fits done, the running fit's epoch (and, once the pace is
    # known, the time left).
    page.wait_for_function(
        "() => /fits 0\\/1 done · final epoch \\d+\\/12/.test(document.getElementById('job').textContent)"
    )
    shot(page, "build-running")
    page.wait_for_function("() => document.getElementById('job-state')?.textContent === 'done'", timeout=120_000)
    assert len(kiln_json("builds", cwd=ui_server.root)) == 2


def test_screen_1280x800_has_no_horizontal_scroll(ui_server: UIServer, page: Any) -> None:
    for path in ("/gallery", "/review", "/changes", "/history", "/builds"):
        page.goto(ui_server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280, path


def test_import_images_from_the_changes_page(ui_server: UIServer, page: Any, tmp_path: Path) -> None:
    from .conftest import png

    (tmp_path / "new.png").write_bytes(png((10, 200, 10), size=(40, 30)))
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    page.goto(ui_server.url + "/changes")
    page.wait_for_selector("#import-files")
    # One bad file refuses the batch: the page names it and says what to do in a browser (the
    # server's "or skip them" is advice for the command line).
    page.set_input_files("#import-files", [str(tmp_path / "new.png"), str(tmp_path / "bad.png")])
    page.click("#import")
    page.wait_for_selector("#import-result .bad")
    said = page.locator("#import-result").inner_text()
    assert said.startswith("stopped after 0 of 2: 1 bad file(s)") and "bad.png" in said, said
    assert said.rstrip().endswith("Remove the bad files from your selection and import again."), said
    toast = page.locator("#toast").inner_text()
    for text in (said, toast):
        assert "--skip-bad" not in text and "skip them" not in text, text
    shot(page, "import-bad-file")
    assert not [r for r in kiln_json("ls", cwd=ui_server.root) if r["name"].startswith("upload/")]
    page.set_input_files("#import-files", str(tmp_path / "new.png"))
    page.fill("#import-label", "7")
    page.click("#import")
    page.wait_for_function("() => document.getElementById('import-result').textContent.startsWith('1 added')")
    row = kiln_json("ls", "--label", "7", cwd=ui_server.root)
    assert "upload/new.png" in {r["name"] for r in row}


def test_embeddings_map_lasso_and_click(ui_server: UIServer, page: Any) -> None:
    bid = kiln_json("builds", cwd=ui_server.root)[0]["id"]
    page.goto(f"{ui_server.url}/builds/{bid}")
    page.wait_for_selector("#map")
    page.locator("#map").scroll_into_view_if_needed()
    box = page.locator("#map").bounding_box()
    x0, y0, w, hgt = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + 5, y0 + 5)
    page.mouse.down()
    for fx, fy in ((0.5, 0.02), (0.5, 0.5), (0.02, 0.5), (0.01, 0.01)):  # the top-left quarter
        page.mouse.move(x0 + fx * w, y0 + fy * hgt, steps=5)
    page.mouse.up()
    page.wait_for_selector("#map-selection .card")
    assert "selected" in page.locator("#map-selection").inner_text()
    assert images_loaded(page, "#map-selection") == page.locator("#map-selection img").count() > 0
    page.select_option("#map-color", "error")
    shot(page, "map-lasso")
    page.locator("#map-selection .card").first.click()
    page.wait_for_url(re.compile(r"/example/[0-9a-f]{32}$"))


# 60 characters without a space or hyphen to break at: the worst a caption has to hold.
LONG_LABEL = "a_class_name_far_longer_than_any_card_was_drawn_for_12345678"


@pytest.fixture
def long_label_server(built: Any) -> Iterator[tuple[UIServer, str]]:
    """The built repository with LONG_LABEL committed on its first example and staged on its second
    (so the gallery, a commit's cards and the staged edits all show it); the server and the first."""
    first, second = built.ls()[:2]
    built.label_many([(first["id"], LONG_LABEL)])
    built.commit("a label longer than a card")
    built.label_many([(second["id"], LONG_LABEL)])
    server = UIServer(built.root)
    yield server, first["id"]
    server.stop()


def fits_the_screen(page: Any, name: str) -> None:
    """No horizontal scroll, every nav link inside the screen, every card caption inside its card."""
    drawn(page)
    page.wait_for_load_state("networkidle")
    width = page.evaluate("() => document.scrollingElement.clientWidth")
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= width, name
    links = page.locator("#nav a")
    assert links.count() == 6
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert links.nth(i).is_visible() and box, (name, i)
        assert 0 <= box["x"] and box["x"] + box["width"] <= width, (name, links.nth(i).inner_text(), box)
    outside = page.evaluate(
        """() => [...document.querySelectorAll('.card .cap *')].filter((el) =>
             el.getBoundingClientRect().right > el.closest('.card').getBoundingClientRect().right + 0.5
           ).map((el) => el.textContent)"""
    )
    assert not outside, (name, outside)
    shot(page, name)


def test_narrow_screen_has_no_horizontal_scroll(long_label_server: tuple[UIServer, str], phone: Any) -> None:
    """Every page at 390x844: nothing scrolls sideways, the nav is all there, long labels stay in
    their cards."""
    server, first = long_label_server
    url, root = server.url, server.root
    commit = kiln_json("log", "-n", "1", cwd=root)[0]["id"]
    build = kiln_json("builds", cwd=root)[0]["id"]
    phone.goto(url + "/gallery")
    phone.wait_for_selector(f'#gallery-grid .card[data-id="{first}"]')
    assert phone.locator(f'#gallery-grid .card[data-id="{first}"] .lab').inner_text() == LONG_LABEL
    fits_the_screen(phone, "narrow-gallery")
    phone.goto(f"{url}/example/{first}")
    fits_the_screen(phone, "narrow-example")
    phone.goto(url + "/review")
    phone.wait_for_selector("#review-item")
    fits_the_screen(phone, "narrow-review")
    phone.goto(url + "/label")
    phone.wait_for_selector("#queue-empty")
    fits_the_screen(phone, "narrow-label-empty")
    phone.click("#fill")
    phone.wait_for_selector("#label-item")
    fits_the_screen(phone, "narrow-label")
    phone.goto(url + "/changes")
    phone.wait_for_selector("#edits")
    assert LONG_LABEL in phone.locator("#edits").inner_text()
    fits_the_screen(phone, "narrow-changes")
    phone.goto(url + "/history")
    phone.wait_for_selector("#log")
    fits_the_screen(phone, "narrow-history")
    phone.goto(f"{url}/history/{commit}")
    phone.wait_for_selector("#diff-relabeled .card")
    fits_the_screen(phone, "narrow-commit")
    phone.locator("#nav a[data-page=builds]").click()  # the nav works, not only shows
    phone.wait_for_selector("#build-list")
    fits_the_screen(phone, "narrow-builds")
    phone.goto(f"{url}/builds/{build}")
    phone.wait_for_selector("#map")
    fits_the_screen(phone, "narrow-report")
    # The wide layout keeps long captions in their cards too.
    phone.set_viewport_size({"width": 1280, "height": 800})
    phone.goto(f"{url}/history/{commit}")
    phone.wait_for_selector("#diff-relabeled .card")
    fits_the_screen(phone, "wide-commit-long-label")
    phone.goto(url + "/gallery")
    phone.wait_for_selector(f'#gallery-grid .card[data-id="{first}"]')
    fits_the_screen(phone, "wide-gallery-long-label")
