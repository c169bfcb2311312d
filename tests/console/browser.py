"""Headless Debian Chromium driven by Selenium (chromium + chromium-driver from apt; no browser download).

WebGL runs on SwiftShader (software), every run gets a fresh profile, and the browser is told not to phone
home, so the only hosts it talks to are the ones a page asks for (tests check that there are none but ours).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = ("chromium", "chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--disable-dev-shm-usage", "--disable-default-apps",
         "--disable-extensions", "--no-default-browser-check", "--metrics-recording-only")


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if not any(shutil.which(c) for c in CHROMIUM):
        return "chromium is not installed (Debian package `chromium`; `make setup` installs it)"
    if not shutil.which("chromedriver"):
        return "chromedriver is not installed (Debian package `chromium-driver`; `make setup` installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (setup.cfg test extras)"
    return None


class Browser:
    """One headless Chromium with a throw-away profile; ``quit()`` removes it."""

    def __init__(self, width: int = 1280, height: int = 800):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="mapsvc-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = next(shutil.which(c) for c in CHROMIUM if shutil.which(c))
        for flag in FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile}")
        opts.add_argument(f"--window-size={width},{height}")
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(30)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def wait_for(self, script: str, timeout: float = 20.0, what: str = ""):
        """Poll a JS expression until it is truthy; returns its value."""
        end = time.monotonic() + timeout
        while True:
            value = self.driver.execute_script(f"return ({script});")
            if value:
                return value
            if time.monotonic() > end:
                state = self.driver.execute_script("return document.body && document.body.dataset.state")
                raise TimeoutError(f"waited {timeout} s for {what or script} (page state {state!r}); "
                                   f"console: {self.console_errors()[:3]}")
            time.sleep(0.05)

    def wait_state(self, state: str = "ready", timeout: float = 30.0) -> None:
        self.wait_for(f"document.body && document.body.dataset.state === {json.dumps(state)}", timeout,
                      f"page state {state}")

    def requested_urls(self) -> list[str]:
        """Every URL the browser asked for since the last call (DevTools performance log)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                urls.append(msg["params"]["request"]["url"])
        return urls

    def console_errors(self) -> list[str]:
        try:
            return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]
        except Exception:
            return []

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests that went anywhere but ``origin`` (data: and blob: URLs are local)."""
        own = urlsplit(origin)
        out = [u for u in self.requested_urls()
               if urlsplit(u).scheme not in ("data", "blob")
               and (urlsplit(u).scheme, urlsplit(u).netloc) != (own.scheme, own.netloc)]
        out += [u for u in self.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != own.netloc]
        return out

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

    def webgl(self) -> dict:
        """The WebGL renderer this browser uses (SwiftShader here)."""
        return self.driver.execute_script("""
            const c = document.createElement('canvas');
            const gl = c.getContext('webgl2') || c.getContext('webgl');
            if (!gl) return {ok: false};
            const dbg = gl.getExtension('WEBGL_debug_renderer_info');
            return {ok: true, version: gl.getParameter(gl.VERSION),
                    renderer: dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)};
        """)
