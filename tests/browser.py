"""A headless Chromium for the HTML tests: Debian's chromium driven by Playwright (never
Playwright's own browser download). Skips without it, except under CI where it fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import require_program

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE = "<script>alert(1)</script>\"quo'te ünïcødé-節点"


@dataclass
class Loaded:
    """A page and what happened while it loaded: console errors, page errors, dialogs."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _need_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("PERF_ANALYZER_REQUIRE_ALL"):
            pytest.fail("playwright is required in CI (PERF_ANALYZER_REQUIRE_ALL is set)")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_program("chromium")
    sync_playwright = _need_playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def load(browser: Any, url: str, width: int = 1100) -> Loaded:
    """Open `url` in a fresh page, recording errors and dismissing (and recording) dialogs."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    loaded = Loaded(page)
    page.on("console", lambda m: loaded.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: loaded.errors.append(str(e)))
    page.on("dialog", lambda d: (loaded.dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="load")
    return loaded
