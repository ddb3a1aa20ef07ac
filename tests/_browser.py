"""Headless Chromium for tests: open a page with the network cut off and inspect it.

Uses Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``)
through selenium; no browser is ever downloaded. Every page is opened offline: Chromium starts
with background networking off, a dead proxy and a host resolver that resolves nothing, and the
DevTools protocol emulates an offline network and blocks http(s)/ws(s) URLs. Requests are still
*recorded* when attempted, so a test can assert that a page tried none.

    from tests._browser import Browser

    @pytest.fixture(scope="module")
    def browser():
        with Browser() as b:          # one Chromium per test module
            yield b

    def test_page(browser, tmp_path):
        page = browser.open(tmp_path / "view.html", wait_for="document.querySelector('svg')")
        assert page.console_errors() == []
        assert page.network_requests() == []
        assert page.count("svg line") > 0
        page.click("#some-button")
        value = page.js("return document.title")
        page.screenshot(tmp_path / "view.png")

``Page`` API (all simple):

* ``js(script, *args)``: run JavaScript (``return`` a value); ``wait_for(expr, timeout)``: wait until
  a JavaScript expression is truthy.
* ``query(css)`` / ``count(css)`` / ``text(css)``: DOM elements, their number, their text.
* ``click(target)``, ``double_click(target)``, ``hover(target)``, ``move_to(x, y)``: user input
  (``target`` is a CSS selector or an element; ``x, y`` are viewport coordinates);
  ``scroll_into_view(target)``.
* ``console()``: every console message seen so far; ``console_errors()``: the errors among them
  (uncaught exceptions, ``console.error``, failed loads).
* ``requests()``: every URL the page tried to load (the page's own file included);
  ``network_requests()``: those that would have gone to the network (http, https, ws, wss, ftp).
* ``alerts()``: how many times ``alert``/``confirm``/``prompt`` were called (a hostile token that
  executed would show up here).
* ``screenshot(path)``: a PNG of the viewport (or of ``element=`` only).

If selenium, chromium or chromedriver is missing, :func:`require` fails the test with the command
to install them (set ``ATTN_PLUGINS_BROWSER_OPTIONAL=1`` to skip instead).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time

CHROMIUM = os.environ.get("ATTN_PLUGINS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ATTN_PLUGINS_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = "apt-get update && apt-get install -y chromium chromium-driver && pip install selenium"
NETWORK_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    # belt and braces: whatever escapes the DevTools offline emulation meets a dead proxy and a
    # resolver that resolves nothing
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--allow-file-access-from-files",
)
# Installed before any page script runs: counts dialogs instead of showing them.
_PRELUDE = """
(function () {
  window.__attnPluginsAlerts = 0;
  var count = function () { window.__attnPluginsAlerts += 1; return null; };
  window.alert = count; window.confirm = count; window.prompt = count; window.print = count;
})();
"""


def missing() -> str | None:
    """Why the browser cannot run here (``None`` when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed ({INSTALL_HINT})"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is missing ({INSTALL_HINT})"
    return None


def require() -> None:
    """Fail (or, with ``ATTN_PLUGINS_BROWSER_OPTIONAL=1``, skip) the calling test if no browser."""
    import pytest

    reason = missing()
    if reason is None:
        return
    if os.environ.get("ATTN_PLUGINS_BROWSER_OPTIONAL") == "1":
        pytest.skip(f"headless Chromium unavailable: {reason}")
    pytest.fail(f"headless Chromium unavailable: {reason}", pytrace=False)


class Browser:
    """One headless Chromium (share it per test module); :meth:`open` loads a page offline."""

    def __init__(self, width: int = 1280, height: int = 1000, device_scale_factor: float = 1.0) -> None:
        require()
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self._profile = tempfile.mkdtemp(prefix="attn-plugins-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.add_argument(f"--force-device-scale-factor={device_scale_factor}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)
        self._cdp("Network.enable", {})
        self._cdp(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        self._cdp("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]})
        self._cdp("Page.addScriptToEvaluateOnNewDocument", {"source": _PRELUDE})

    def _cdp(self, command: str, params: dict):
        return self.driver.execute_cdp_cmd(command, params)

    def open(self, path, wait_for: str | None = None, timeout: float = 30.0) -> Page:
        """Load a local HTML file (path or ``file://`` URL) and return a :class:`Page`.

        ``wait_for``: a JavaScript expression to wait for (truthy) before returning.
        """
        self.driver.get_log("browser")  # drop what earlier pages left
        self.driver.get_log("performance")
        url = str(path)
        if not url.startswith("file:"):
            url = pathlib.Path(url).resolve().as_uri()
        page = Page(self, url)
        self.driver.get(url)
        if wait_for:
            page.wait_for(wait_for, timeout)
        return page

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """A page open in a :class:`Browser` (valid until the browser opens another one)."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.browser = browser
        self.driver = browser.driver
        self.url = url
        self._console: list[dict] = []
        self._requests: list[str] = []

    # ----- logs ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        for entry in self.driver.get_log("browser"):
            self._console.append({"level": entry.get("level"), "message": entry.get("message", "")})
        for entry in self.driver.get_log("performance"):
            try:
                message = json.loads(entry["message"])["message"]
            except (KeyError, ValueError):
                continue
            if message.get("method") == "Network.requestWillBeSent":
                self._requests.append(message["params"]["request"]["url"])

    def console(self) -> list[dict]:
        """Console messages so far: ``[{"level": "SEVERE"|"WARNING"|"INFO"|..., "message": str}]``."""
        self._drain()
        return list(self._console)

    def console_errors(self) -> list[str]:
        return [m["message"] for m in self.console() if m["level"] == "SEVERE"]

    def requests(self) -> list[str]:
        """Every URL the page tried to load, in order."""
        self._drain()
        return list(self._requests)

    def network_requests(self) -> list[str]:
        """URLs the page tried to fetch from the network (none may have succeeded: the network is off)."""
        return [u for u in self.requests() if u.lower().startswith(NETWORK_SCHEMES)]

    def alerts(self) -> int:
        return int(self.js("return window.__attnPluginsAlerts || 0"))

    # ----- DOM and scripts -------------------------------------------------------------------------
    def js(self, script: str, *args):
        """Run ``script`` in the page (use ``return`` for a value; ``arguments[i]`` are ``args``)."""
        return self.driver.execute_script(script, *args)

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.05):
        """Wait until the JavaScript ``expression`` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(f"return ({expression});")
            if value:
                return value
            if time.monotonic() > deadline:
                errors = self.console_errors()
                raise TimeoutError(f"timed out after {timeout}s waiting for {expression!r}; console errors: {errors}")
            time.sleep(interval)

    def query(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def count(self, css: str) -> int:
        return int(self.js("return document.querySelectorAll(arguments[0]).length", css))

    def text(self, css: str) -> list[str]:
        """``textContent`` of every element matching ``css``."""
        return list(self.js("return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)", css))

    def _element(self, target):
        if isinstance(target, str):
            found = self.query(target)
            if not found:
                raise LookupError(f"no element matches {target!r}")
            return found[0]
        return target

    def click(self, target) -> None:
        """A real mouse click (or, for SVG elements that WebDriver cannot click, a dispatched one)."""
        element = self._element(target)
        try:
            from selenium.webdriver.common.action_chains import ActionChains

            ActionChains(self.driver).move_to_element(element).click().perform()
        except Exception:  # noqa: BLE001 - fall back to a synthetic event
            self.js("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", element)

    def double_click(self, target) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).double_click(self._element(target)).perform()

    def hover(self, target) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).move_to_element(self._element(target)).perform()

    def scroll_into_view(self, target) -> None:
        """Scroll so that ``target`` (selector or element) is in the viewport."""
        self.js("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", self._element(target))

    def move_to(self, x: float, y: float) -> None:
        """Move the mouse to viewport coordinates ``(x, y)`` (real pointer events)."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        builder = ActionBuilder(self.driver)
        builder.pointer_action.move_to_location(int(round(x)), int(round(y)))
        builder.perform()

    def screenshot(self, path, element=None) -> str:
        """Save a PNG of the viewport, or of ``element`` (selector or element) only."""
        path = str(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if element is not None:
            self._element(element).screenshot(path)
        else:
            self.driver.save_screenshot(path)
        return path
