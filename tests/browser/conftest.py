"""A real headless browser: Playwright driving Debian's Chromium (the `chromium` package).

Playwright never downloads a browser here: it launches the system's Chromium by its
``executable_path`` (``SAKK_CHROMIUM`` overrides ``/usr/bin/chromium``) with no sandbox, no
GPU and nothing that phones home. Without Chromium or Playwright the browser tests skip and
say why; ``make test`` (``.ci/test-deps``) installs Chromium where it can.

Each test's screenshots go to ``var/screenshots/<test name>/`` (``SAKK_SCREENSHOTS_DIR``
overrides ``var/screenshots``); the run's summary prints the folders written.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_DEFAULT = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
BROWSER_LAUNCH_TIMEOUT_MS = 30_000
PAGE_TIMEOUT_MS = 10_000  # every click, fill and wait on a page gives up after this
VIEWPORT = {"width": 1280, "height": 900}

_screenshot_dirs: list[Path] = []


def chromium_path() -> str:
    return os.environ.get("SAKK_CHROMIUM", CHROMIUM_DEFAULT)


def browser_missing() -> str | None:
    """None when Playwright and Chromium are both here, else why the browser tests skip."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]', or `make install`)"
    path = chromium_path()
    if not (Path(path).is_file() and os.access(path, os.X_OK)) and not shutil.which(path):
        return (
            f"Chromium not found at {path} (Debian package `chromium`, which `make test` "
            "installs through .ci/test-deps when it can; SAKK_CHROMIUM names another)"
        )
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session; each test opens its own context (cookies)."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=list(CHROMIUM_FLAGS),
            timeout=BROWSER_LAUNCH_TIMEOUT_MS,
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Any]:
    """A factory of pages, each in its own browser context: one signed-in person each."""
    contexts: list[Any] = []

    def make() -> Any:
        context = chromium.new_context(viewport=VIEWPORT)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot folder, emptied first: var/screenshots/<test name>/."""
    base = Path(os.environ.get("SAKK_SCREENSHOTS_DIR", ROOT / "var" / "screenshots"))
    folder = base / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _screenshot_dirs.append(folder)
    print(f"screenshots: {folder}")
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    written = [d for d in _screenshot_dirs if d.is_dir() and any(d.iterdir())]
    if written:
        terminalreporter.section("browser screenshots")
        for folder in written:
            terminalreporter.write_line(f"{folder} ({len(list(folder.iterdir()))} files)")


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ``sakk console`` processes over a ledger; each is stopped after the test."""
    from tests.browser.console import Console, start_console

    started: list[Console] = []

    def start(database_url: str, **env: str) -> Console:
        console = start_console(database_url, tmp_path / f"console-{len(started)}.log", **env)
        started.append(console)
        return console

    yield start
    for console in started:
        console.stop()
