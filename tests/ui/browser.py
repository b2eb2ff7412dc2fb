"""Headless Chromium driven over the DevTools protocol: log in by cookie, open a page, screenshot it.

Only the standard library, ``httpx`` and ``websockets`` (both installed with Airflow 3). The
browser runs with a throwaway profile and no background networking, and is ended with its
process group.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    """Debian's ``chromium`` (or another Chromium on PATH), None without one."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Chromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, width: int = 1440, height: int = 960) -> None:
        self.width, self.height = width, height
        self._ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        from websockets.sync.client import connect

        binary = chromium_path()
        if binary is None:
            raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="chromium-")
        self._process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.__exit__()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        self._socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            self._socket.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are dropped."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", url=url, name=name, value=value, httpOnly=True, sameSite="Lax")

    def screenshot(
        self,
        url: str | None,
        path: Path,
        *,
        ready: str = "true",
        timeout: float = 90.0,
        full_page: bool = False,
    ) -> Path:
        """Open ``url`` (None: stay), wait until the JavaScript ``ready`` is true, write a PNG to ``path``.

        The UI is a single-page app that renders after its API calls, and plugin tabs load in
        an iframe after that: ``ready`` says what must be on screen before the picture.
        """
        if url is not None:
            self.call("Page.navigate", url=url)
        self.wait_until(ready, timeout)
        time.sleep(1.0)  # let the last paint land
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
            height = min(int(metrics["height"]), 6000)
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path

    def wait_until(self, expression: str, timeout: float = 90.0) -> None:
        """Poll a JavaScript expression until it is true; fail naming it after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.text(f"Boolean({expression})") != "True":
            if time.monotonic() > deadline:
                raise TimeoutError(f"page not ready after {timeout:.0f} s: {expression}")
            time.sleep(0.5)

    def text(self, expression: str = "document.body.innerText") -> str:
        """A JavaScript expression's value in the page as text (``True``/``False`` for booleans)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]
        return str(result.get("value"))

    # What the Airflow UI shows once a plugin tab's iframe holds its page.
    FRAME_LOADED = "document.querySelector('iframe')?.contentDocument?.body?.innerText.trim().length > 0"
