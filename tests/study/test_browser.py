"""The report and optuna-dashboard in a real browser: Debian's headless chromium.

The page is driven over the Chrome DevTools Protocol (a minimal websocket client below, so no
extra package): every uncaught exception and console error is collected, the rendered DOM is
checked, and a screenshot of each page is kept in ``tests/artifacts/screenshots/`` (or
``$WRN_SCREENSHOT_DIR``). Skipped, saying why, only where ``/usr/bin/chromium`` is missing and
``WRN_REQUIRE_BROWSER`` is unset; CI installs chromium and sets it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from study import ablate, dashboard, report, run
from tests.study.dashboard_server import dashboard_server
from tests.tiny import tiny_flags

CHROMIUM = Path(os.environ.get("WRN_CHROMIUM", "/usr/bin/chromium"))  # Debian's package
SCREENSHOTS = Path(
    os.environ.get(
        "WRN_SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
    )
)
# CI sets WRN_REQUIRE_BROWSER=1, so a missing browser fails there instead of skipping
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # a chromium process and a dashboard server
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("WRN_REQUIRE_BROWSER"),
        reason=f"{CHROMIUM} is missing (apt-get install -y chromium; CI installs it)",
    ),
]

TINY = tiny_flags("augmentation", "lr")
LIGHT = [*TINY, "--space", "light", "--set", "grad_accum=1", "--set", "first_dropout=0"]


# -- a minimal Chrome DevTools Protocol client --------------------------------------------------


class WebSocket:
    """Text frames over a plain socket (RFC 6455): all the DevTools protocol needs."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self._read(1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"websocket handshake refused: {head[:80]!r}")

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            data += chunk
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 1 << 16:
            head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)  # a client must mask what it sends
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("the browser closed the connection")
            if opcode in (0x0, 0x1):  # text, or a continuation of it
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """Headless chromium with one page, driven over the DevTools protocol."""

    def __init__(self) -> None:
        if not CHROMIUM.exists():
            raise FileNotFoundError(f"{CHROMIUM}: chromium is required (WRN_REQUIRE_BROWSER)")
        self.profile = tempfile.mkdtemp(prefix="wrn-chromium-")
        self.proc = subprocess.Popen(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        endpoint = None
        for line in self.proc.stderr:  # chromium prints its DevTools address when ready
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                endpoint = match[1]
                break
        if endpoint is None:
            raise RuntimeError(f"chromium exited ({self.proc.wait()}) without a DevTools port")
        port = urllib.parse.urlparse(endpoint).port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            page = next(p for p in json.load(r) if p["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, ready: str, timeout: float = 60.0) -> None:
        """Navigate and wait until the page has loaded and ``ready`` (JS) is true."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"document.readyState === 'complete' && Boolean({ready})"):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 500) : ''")
                raise TimeoutError(f"{url}: {ready} still false; page: {text!r}")
            time.sleep(0.25)

    def text(self) -> str:
        return self.evaluate("document.body.innerText")

    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors and failed loads since the browser started."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                found.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
        return found

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the window."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=int(min(size["height"], 16000)),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        self.call("Emulation.clearDeviceMetricsOverride")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


# -- fixtures -----------------------------------------------------------------------------------


def search(url: str, data_dir: Path, trials: int, *extra: str) -> None:
    argv = [
        *("--storage", url, "--data-dir", str(data_dir), "--val-size", "100"),
        *("--device", "cpu", "--epochs", "1", "--pruner", "none", "--trials", str(trials)),
        *extra,
    ]
    assert run.main(argv) == 0


@pytest.fixture(scope="module")
def written(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two small studies, the light one ablated (1 seed), and the report on them."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'wrn.db'}"
    search(url, cifar_dir, 2, *TINY)
    search(url, cifar_dir, 2, *LIGHT)
    for name in ("wrn28_10", "light"):  # the markdown note on each study's Note page
        dashboard.write_study_note(optuna.load_study(study_name=name, storage=url), url)
    common = ["--storage", url, "--data-dir", str(cifar_dir), "--device", "cpu"]
    assert ablate.main(["--study-name", "light", *common, "--epochs", "1", "--seeds", "1"]) == 0
    out = folder / "report.html"
    assert report.main(["--storage", url, "--out", str(out)]) == 0
    figures = len(re.findall(r'class="plotly-graph-div"', out.read_text()))
    return {"url": url, "folder": folder, "report": out, "figures": figures}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def dashboard_url(written: dict[str, Any]) -> Iterator[str]:
    """``optuna-dashboard`` as the README starts it, on a free loopback port."""
    log = written["folder"] / "dashboard.log"
    with dashboard_server(written["url"], written["folder"] / "artifacts", log) as base:
        yield base


# -- the tests ----------------------------------------------------------------------------------


def test_report_renders_in_chromium(written: dict[str, Any], browser: Browser) -> None:
    rendered = "document.querySelectorAll('.plotly-graph-div .main-svg').length"
    graphs = "document.querySelectorAll('.plotly-graph-div').length"
    browser.open(
        written["report"].as_uri(), f"{rendered} > 0 && {rendered} >= {graphs}", timeout=90
    )
    assert browser.errors() == []
    assert browser.evaluate("typeof Plotly") == "object"  # the inlined plotly.js ran
    # every figure drew: each graph div holds plotly's SVG
    assert browser.evaluate(graphs) == written["figures"] >= 8
    assert browser.evaluate(
        "Array.from(document.querySelectorAll('.plotly-graph-div'))"
        ".every(d => d.querySelector('.main-svg') !== null)"
    )
    text = browser.text()
    summary = text.split("Summary", 1)[1].split("Accuracy against cost", 1)[0]
    assert "light reaches" in summary and "wrn28_10 reaches" in summary
    for title in (
        "Best validation accuracy against CPU-seconds spent",  # CPU runs: not GPU time
        "Does the ranking hold?",
        "light: per-epoch validation accuracy",
        "wrn28_10: parallel coordinates",
        "light: effect of switching each factor off",
    ):
        assert title in text, title
    browser.screenshot(SCREENSHOTS / "report.png")


def test_dashboard_renders_in_chromium(dashboard_url: str, browser: Browser) -> None:
    browser.open(
        f"{dashboard_url}/dashboard",
        "['wrn28_10', 'light', 'light-ablation'].every(n => document.body.innerText.includes(n))",
    )
    browser.screenshot(SCREENSHOTS / "dashboard.png")
    with urllib.request.urlopen(f"{dashboard_url}/api/studies", timeout=30) as r:
        ids = {s["study_name"]: s["study_id"] for s in json.load(r)["study_summaries"]}

    # a study's page: its history chart drawn by the dashboard's own plotly
    browser.open(
        f"{dashboard_url}/dashboard/studies/{ids['light']}",
        "document.body.innerText.includes('light (id=') "
        "&& document.querySelector('.js-plotly-plot .scatterlayer .trace .point') !== null",
    )
    assert "Objective 0" not in browser.text()  # the metric is named (val_acc)
    browser.screenshot(SCREENSHOTS / "dashboard-study.png")

    # the harness's markdown note, rendered
    browser.open(
        f"{dashboard_url}/dashboard/studies/{ids['wrn28_10']}/note",
        "document.body.innerText.includes('search over')",
    )
    text = browser.text()
    assert "wrn28_10: search over wrn28_10" in text and "python -m study.rerun" in text
    browser.screenshot(SCREENSHOTS / "dashboard-note.png")

    # the ablation study's page carries the effect chart the harness saved
    browser.open(
        f"{dashboard_url}/dashboard/studies/{ids['light-ablation']}",
        "document.body.innerText.includes('light-ablation: effects') "
        "&& document.querySelector('.js-plotly-plot .scatterlayer .trace .point') !== null",
    )
    browser.screenshot(SCREENSHOTS / "dashboard-ablation.png")

    assert browser.errors() == []
