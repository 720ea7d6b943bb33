"""A headless Chromium driven by Playwright: open a page, wait until its rendered text holds what a reviewer
should see, take a screenshot. Playwright drives the system's Chromium (Debian's `chromium`); no browser is
downloaded."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

from pipelines.processes import free_port

__all__ = ["CHROMIUM", "browse", "free_port", "wait_for_http"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# This machine's network is closed: without these Chromium keeps retrying Google's hosts in the background.
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCROLL_TO = """text => {
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) if (walk.currentNode.nodeValue.includes(text)) {
        walk.currentNode.parentElement.scrollIntoView({block: 'start'}); return true; }
    return false; }"""

Visit = tuple  # (url, strings the page must show, screenshot path or None[, text to scroll to first])


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.time() > deadline:
                raise TimeoutError(f"{url}: nothing answered in {timeout:.0f} s") from None
            time.sleep(0.3)


def browse(visits: list[Visit], width: int = 1400, height: int = 900, timeout: float = 60) -> list[str]:
    """Each visit in one browser, in order; the pages' rendered texts. A page that never shows what it must
    fails naming the missing strings and what the page said instead."""
    from playwright.sync_api import TimeoutError as PageTimeout
    from playwright.sync_api import sync_playwright

    texts = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            for url, expect, shot, *focus in visits:
                page.goto(url)
                try:
                    page.wait_for_function(
                        "items => document.body && items.every(i => document.body.innerText.includes(i))",
                        arg=expect,
                        timeout=timeout * 1000,
                    )
                except PageTimeout:
                    text = page.inner_text("body")
                    missing = [item for item in expect if item not in text]
                    raise AssertionError(
                        f"{url}: never showed {json.dumps(missing)}; the page said:\n{text[:2000]}"
                    ) from None
                page.wait_for_timeout(1000)  # let late charts settle before a screenshot
                if focus:
                    page.evaluate(SCROLL_TO, focus[0])
                    page.wait_for_timeout(500)
                if shot:
                    Path(shot).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shot))
                texts.append(page.inner_text("body"))
        finally:
            browser.close()
    return texts
