"""Headless Chromium for the tests that look at pages as a user does (the atlas gallery, the GUI).

The browser is Debian's package (/usr/bin/chromium, installed by .ci/run), driven by Playwright
pointed at that binary: nothing downloads a browser build at run time. Tests ask for the
``browser`` fixture, which skips with the reason when either piece is missing.

>>> def test_page(browser):
...     page = browser.new_page(viewport={"width": 1280, "height": 800})
...     page.goto("file:///tmp/out/index.html")
"""
import os
import shutil

import pytest

CHROMIUM = os.environ.get("PVF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

# Without the background-networking switches Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses, many at a time.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    """A Playwright Browser on the system Chromium, shared by the session's tests."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PVF_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the driver only)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def collect_page_errors(page):
    """Start recording the page's uncaught JS errors and console errors; returns the live list."""
    errors = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: errors.append(f"console: {message.text}") if message.type == "error" else None)
    return errors
