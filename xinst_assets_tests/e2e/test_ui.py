"""The Dagster UI of the real webserver, opened in headless Chromium: the pipeline's stages are on the page.

Needs a Chromium binary (Debian's ``chromium``: the test command, ``scripts/test.sh``, installs it with
``scripts/install_browser.sh``) and Playwright's Python package (a dev dependency), which drives that binary;
Playwright's own browser download is never used. Without Chromium the tests fail, saying how to install it;
``XINST_SKIP_BROWSER_TESTS=1`` skips them instead, for a machine that cannot have a browser. Screenshots go to
``test-artifacts/`` (git-ignored) for a person to look at, and a failed test leaves its page's screenshot and
HTML there.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from xinst_assets.settings import PROJECT_ROOT
from xinst_assets_tests.e2e.conftest import STALL_LIMIT_S, DagsterServer

# The first test to use the server waits for it to start: a hang guard, not an expected duration.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

STAGES = ("raw_web_text", "language_filtered_text", "candidate_pairs", "scored_pairs", "diversified_dataset")
GROUPS = ("ingest", "filtering", "curated_inputs", "generation", "curation", "dataset", "tuning")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]
# How long one page action may wait (an element to appear, the network to go idle): a hang guard, far beyond
# the UI's first load on a loaded machine (it compiles the asset graph of the code location).
PAGE_TIMEOUT_MS = int(STALL_LIMIT_S * 1000)


def chromium_binary() -> str | None:
    """``$XINST_CHROMIUM``, else Debian's chromium on PATH or in /usr/bin."""
    for candidate in (os.environ.get("XINST_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


SKIP_ENV = "XINST_SKIP_BROWSER_TESTS"


@pytest.fixture(scope="module")
def browser():
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser tests skipped on request")
    binary = chromium_binary()
    if binary is None:
        pytest.fail(
            "no Chromium binary: install Debian's chromium (bash scripts/install_browser.sh, which the test "
            f"command runs), point XINST_CHROMIUM at one, or set {SKIP_ENV}=1 to skip the browser tests"
        )
    from playwright import sync_api  # a dev dependency: its absence is an installation error

    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    """A fresh page; when the test fails, its screenshot and HTML are kept in test-artifacts/."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failed.png"))
            (ARTIFACTS / f"{request.node.name}-failed.html").write_text(page.content(), encoding="utf-8")
        context.close()


def test_the_asset_catalog_lists_every_stage_of_the_pipeline(dagster_server: DagsterServer, page):
    page.goto(f"{dagster_server.url}/assets", wait_until="domcontentloaded")
    for stage in STAGES:
        # Each row links to the asset's page; its label is cut in the middle when narrow: match the link.
        page.locator(f'a[href="/assets/{stage}"]').first.wait_for(state="visible")
    save_screenshot(page, "asset-catalog.png")


def test_the_global_lineage_page_draws_the_stage_groups(dagster_server: DagsterServer, page):
    page.goto(f"{dagster_server.url}/asset-groups", wait_until="domcontentloaded")
    for group in GROUPS:
        page.locator("svg").get_by_text(group, exact=True).first.wait_for(state="visible")
    page.wait_for_load_state("networkidle")
    save_screenshot(page, "asset-groups.png")


def test_the_lineage_of_raw_web_text_draws_every_stage_downstream_of_it(dagster_server: DagsterServer, page):
    lineage = "view=lineage&lineageScope=downstream&lineageDepth=10"
    page.goto(f"{dagster_server.url}/assets/raw_web_text?{lineage}", wait_until="domcontentloaded")
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    missing: list[str] = list(STAGES)
    while missing and time.monotonic() < deadline:
        labels = [text.strip() for text in page.locator("svg foreignObject div").all_text_contents()]
        missing = [stage for stage in STAGES if not any(label_shows(label, stage) for label in labels)]
        if missing:
            page.wait_for_timeout(500)
    assert missing == [], f"stages not drawn in the lineage graph: {missing}"
    page.wait_for_load_state("networkidle")
    save_screenshot(page, "asset-lineage.png")


def label_shows(label: str, name: str) -> bool:
    """Whether a node label shows ``name``: whole, or cut in the middle as the zoomed-out graph draws long
    names (``language_fil…_text``)."""
    if label == name:
        return True
    head, sep, tail = label.partition("…")
    return (
        bool(sep) and len(head) >= 3 and len(head + tail) < len(name)
        and name.startswith(head) and name.endswith(tail)
    )


def save_screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000  # a drawn page, not a blank one (a blank 1600x1000 PNG is ~10 KB)
    return path
