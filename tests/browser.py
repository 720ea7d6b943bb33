"""A headless Chromium driven over the DevTools protocol (a websocket; aiohttp is already installed): open a page,
wait until its rendered text holds what a reviewer should see, take a screenshot. No browser is downloaded."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from pipelines.bench import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.ids = ws, itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        await self.ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        async for message in self.ws:
            reply = json.loads(message.data)
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise ConnectionError("Chromium closed the DevTools connection")

    async def text(self) -> str:
        result = await self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True
        )
        return result["result"].get("value") or ""

    async def open(self, url: str, expect: list[str], timeout: float = 60) -> str:
        """Navigate, then poll the rendered text until every `expect` string is on the page; return the text."""
        await self.call("Page.navigate", url=url)
        deadline, text = time.time() + timeout, ""
        while time.time() < deadline:
            text = await self.text()
            if all(item in text for item in expect):
                await asyncio.sleep(1)  # let late charts settle before a screenshot
                return await self.text()
            await asyncio.sleep(0.5)
        missing = [item for item in expect if item not in text]
        raise AssertionError(f"{url}: never showed {missing}; the page said:\n{text[:2000]}")

    async def scroll_to(self, text: str) -> None:
        """Bring the first element showing `text` to the top of the viewport (e.g. a run page's metrics table)."""
        script = (
            "(() => { const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);"
            f" while (walk.nextNode()) if (walk.currentNode.nodeValue.includes({json.dumps(text)}))"
            " { walk.currentNode.parentElement.scrollIntoView({block: 'start'}); return true; } return false; })()"
        )
        await self.call("Runtime.evaluate", expression=script)
        await asyncio.sleep(0.5)

    async def screenshot(self, path: Path) -> None:
        data = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))


Visit = tuple  # (url, strings the page must show, screenshot path or None[, text to scroll to first])


async def _browse(visits: list[Visit], width: int, height: int) -> list[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        chromium = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/json/version", timeout=30)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as listing:
                target = next(t for t in json.load(listing) if t["type"] == "page")
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws,
            ):
                page, texts = Page(ws), []
                await page.call("Page.enable")
                for url, expect, shot, *focus in visits:
                    texts.append(await page.open(url, expect))
                    if focus:
                        await page.scroll_to(focus[0])
                    if shot:
                        await page.screenshot(shot)
                return texts
        finally:
            chromium.kill()
            chromium.wait(timeout=30)


def browse(visits: list[Visit], width: int = 1400, height: int = 900) -> list[str]:
    """Each visit in one browser, in order; the pages' rendered texts."""
    return asyncio.run(_browse(visits, width, height))
