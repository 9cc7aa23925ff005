"""``dreamctl report``: the atlas metrics of a small precursor run, and its HTML page as a
user sees it in headless Chromium (images load, sorting reorders the cards, the dead filter
shows exactly the dead maps)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DEAD_MAP = 2  # its conv3 bias is set far below zero: no input can wake it
MAPS = [0, 1, 2, 3]
PRECURSOR = ["precursor", "--maps", "0-3", "--grid", "2", "--test-epochs", "3", "--top", "2",
             "--full-epochs", "20", "--actors", "2", "--chunk-size", "32"]
OIP = ["oip", "--maps", "0-1", "--epochs", "5", "--restarts", "2", "--actors", "2", "--chunk-size", "32"]
REPORT = ["report", "--oip-restarts", "2", "--oip-epochs", "20", "--actors", "2", "--chunk-size", "32"]


@pytest.fixture(scope="module")
def model_with_dead_map(tmp_path_factory, trained_model_path):
    """The session's CNN with conv3 map DEAD_MAP killed (bias -1e4), saved as .keras."""
    from cluster.model_file import load_model, save_model
    from core.model import Standardization

    model, metadata = load_model(trained_model_path)
    kernel, bias = model.get_layer("conv3").get_weights()
    bias[DEAD_MAP] = -1e4
    model.get_layer("conv3").set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("dead-map-model") / "cnn.keras"
    save_model(model, path, Standardization(**metadata["standardization"]), metadata["data"], metadata["metrics"])
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory, model_with_dead_map, ray_local):
    """A precursor run of maps 0-3, an oip run of maps 0-1 (reused by the report) and the
    report: (working dir, index.html, metrics frame, the report's stdout)."""
    from cli.app import main

    folder = tmp_path_factory.mktemp("report")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main([*PRECURSOR, "--model", str(model_with_dead_map)]) == 0
        assert main([*OIP, "--model", str(model_with_dead_map)]) == 0
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            assert main([*REPORT, "--model", str(model_with_dead_map)]) == 0
    finally:
        os.chdir(cwd)
    page = next((folder / "results" / "precursor").glob("*/report/index.html"))
    metrics = pd.read_parquet(folder / "results" / "atlas" / "latest" / "metrics").sort_values("map").reset_index(drop=True)
    return folder, page, metrics, stdout.getvalue()


def test_metrics_per_map(report, model_with_dead_map, dataset):
    from cluster.model_file import load_model
    from core.atlas import map_activations
    from core.model import Standardization

    folder, page, metrics, stdout = report
    assert metrics["map"].tolist() == MAPS
    dead = metrics.set_index("map").loc[DEAD_MAP]
    assert not dead["oip_alive"] and not dead["precursor_alive"] and dead["data_max"] == 0
    assert math.isnan(dead["precursor_ratio"])  # a map the test set never activates has no ratio
    alive = metrics[metrics["map"] != DEAD_MAP]
    assert (alive["precursor_loss"] > 0).all() and (alive["data_max"] > 0).all()
    np.testing.assert_allclose(alive["precursor_ratio"], alive["precursor_loss"] / alive["data_max"], rtol=1e-5)
    # random-start OIPs: maps 0-1 from the oip run, maps 2-3 computed (2 starts × 20 steps)
    oips = pd.read_parquet(folder / "results" / "oip" / "latest" / "oips").groupby("map")["loss"].max()
    reused, computed = metrics.set_index("map").loc[[0, 1]], metrics.set_index("map").loc[[2, 3]]
    assert reused["oip_source"].str.fullmatch(r"oip/[0-9a-f]{12}").all() and (reused["oip_epochs"] == 5).all()
    np.testing.assert_allclose(reused["oip_loss"], oips.loc[[0, 1]], rtol=1e-6)
    assert (computed["oip_source"] == "computed").all() and (computed["oip_epochs"] == 20).all()
    assert "(random-start OIPs of 2 maps from oip run " in stdout
    assert metrics["digit"].between(0, 9).all() and metrics["probability"].between(0.1, 1).all()
    assert metrics["entropy"].between(0, math.log(10) + 1e-5).all()
    assert all(len(coarse) == 4 for coarse in metrics["coarse"])  # --grid 2

    # the strongest test images are the test set's top activations of each map, strongest first
    model, metadata = load_model(model_with_dead_map)
    test = Standardization(**metadata["standardization"]).apply(dataset.x_test)[..., 0]
    activations = map_activations(model, "conv3", test)[:, MAPS]  # (N, 4)
    for column, row in enumerate(metrics.itertuples()):
        assert len(row.top_indices) == 9
        assert row.data_max == pytest.approx(activations[:, column].max(), rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(row.top_activations, activations[row.top_indices, column], rtol=1e-4, atol=1e-6)
        assert np.all(np.diff(row.top_activations) <= 0)
        if row.map != DEAD_MAP:
            assert row.top_activations[0] == pytest.approx(row.data_max, rel=1e-5)
        assert list(row.top_labels) == dataset.y_test[row.top_indices].tolist()
    dead_from_random_starts = metrics.loc[~metrics["oip_alive"], "map"].tolist()
    assert DEAD_MAP in dead_from_random_starts
    assert f"dead from random starts: {', '.join(map(str, dead_from_random_starts))} (" in stdout
    assert f"open: {page.resolve().as_uri()}\n" in stdout


def test_report_refuses_a_folder_that_is_no_precursor_run_and_another_model(report, trained_model_path, cli, tmp_path, capsys):
    assert cli("report", tmp_path, "--model", trained_model_path) == 2
    assert "not a dreamctl run folder" in capsys.readouterr().err
    precursor_run = report[1].parent.parent
    assert cli("report", precursor_run, "--model", trained_model_path) == 2
    assert "was made with model" in capsys.readouterr().err


def test_report_reads_only_what_verifies_and_writes_only_into_the_run(report, model_with_dead_map, cli, tmp_path,
                                                                         capsys):
    folder, page, metrics, stdout = report
    results = folder / "results"
    run = page.parent.parent
    # a latest that leads into another results folder is refused: nothing is written there
    other = tmp_path / "other" / "precursor"
    other.mkdir(parents=True)
    (other / "latest").symlink_to(f"../../{os.path.relpath(run, tmp_path)}")
    before = sorted(p.name for p in run.rglob("*"))
    assert cli("report", other / "latest", "--model", model_with_dead_map) == 2
    assert "not to a run beside it" in capsys.readouterr().err
    assert sorted(p.name for p in run.rglob("*")) == before and not (tmp_path / "other" / "atlas").exists()
    # a garbage run of another job beside the ones the report reads is passed over with one warning
    garbage = results / "oip" / "0123456789ab"
    garbage.mkdir()
    (garbage / "_manifest.json").write_text('{"job": "oip"}')
    (garbage / "_SUCCESS").write_text("")
    try:
        assert cli("report", run, "--model", model_with_dead_map, *REPORT[1:]) == 0
        assert "skipped: " in capsys.readouterr().err
    finally:
        shutil.rmtree(garbage)
    # an edited part of the precursor run is named and refused, never shown in the atlas
    part = next((run / "oips").glob("part-*.parquet"))
    original = part.read_bytes()
    part.write_bytes(original[:-8] + b"PAR1PAR1")
    try:
        assert cli("report", run, "--model", model_with_dead_map, *REPORT[1:]) == 2
        assert "is damaged" in capsys.readouterr().err
    finally:
        part.write_bytes(original)


# ----- the page in headless Chromium, driven over the DevTools protocol ----------------------
class DevTools:
    """A headless Chromium with one page, and a tiny WebSocket client for the DevTools
    protocol (RFC 6455 text frames; client frames masked, server frames not)."""

    def __init__(self, url: str, profile: Path, width: int = 1400, height: int = 1000):
        self.profile = profile
        self.process = subprocess.Popen(
            [shutil.which("chromium"), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(target for target in targets if target["type"] == "page")
        self._connect(page["webSocketDebuggerUrl"])
        self._next_id = 0
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.evaluate("new Promise(r => document.readyState === 'complete' ? r() : addEventListener('load', () => r()))")

    def _connect(self, url: str) -> None:
        parts = urllib.parse.urlparse(url)
        self.socket = socket.create_connection((parts.hostname, parts.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self._exactly(1)
        assert response.split(b"\r\n")[0].split()[1] == b"101", response

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.socket.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def _send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
                                  if n < 65536 else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.socket.sendall(header + mask + masked)

    def _receive(self) -> str:
        message = b""
        while True:
            first, second = self._exactly(2)
            n = second & 0x7F
            if n >= 126:
                n = int.from_bytes(self._exactly(2 if n == 126 else 8), "big")
            data = self._exactly(n)
            if first & 0x0F == 0x8:
                raise ConnectionError("DevTools closed the connection")
            message += data
            if first & 0x80:
                return message.decode()

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        self._send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self._next_id:  # skip events
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        """Stop Chromium, and remove the folder in $TMPDIR that holds its profile's
        singleton socket (a terminated Chromium leaves it)."""
        singleton = self.profile / "SingletonSocket"
        socket_folder = Path(os.readlink(singleton)).parent if singleton.is_symlink() else None
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=10)
        if socket_folder is not None and socket_folder.name.startswith("org.chromium.Chromium."):
            shutil.rmtree(socket_folder, ignore_errors=True)


VISIBLE_MAPS = "Array.from(document.querySelectorAll('#cards .card')).filter(c => !c.hidden).map(c => Number(c.dataset.map))"


def choose(browser: DevTools, control: str, value) -> list[int]:
    """Set a control as a user would (value, then a change event); the visible maps in order."""
    prop = "checked" if isinstance(value, bool) else "value"
    browser.evaluate(f"(e => {{ e.{prop} = {json.dumps(value)}; e.dispatchEvent(new Event('change')); }})"
                     f"(document.getElementById('{control}'))")
    return browser.evaluate(VISIBLE_MAPS)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package")
def test_report_page_in_headless_chromium(report, tmp_path):
    folder, page, metrics, _ = report
    browser = DevTools(page.resolve().as_uri(), tmp_path / "profile")
    try:
        images = browser.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert len(images) == len(MAPS) * (2 + 9)  # two OIPs and nine test images per map
        assert [src for src, complete, width in images if not (complete and width > 0)] == []
        assert all((page.parent / src).is_file() for src, _, _ in images)

        assert browser.evaluate(VISIBLE_MAPS) == MAPS  # by map, ascending
        by_entropy = metrics.sort_values(["entropy", "map"], ascending=[False, True])["map"].tolist()
        choose(browser, "order", "desc")
        assert choose(browser, "sort", "entropy") == by_entropy
        by_ratio = metrics.dropna(subset=["precursor_ratio"]).sort_values("precursor_ratio", ascending=False)["map"].tolist()
        assert choose(browser, "sort", "ratio") == by_ratio + [DEAD_MAP]  # no ratio: last
        assert choose(browser, "sort", "loss") == metrics.sort_values(["precursor_loss", "map"], ascending=[False, True])["map"].tolist()
        assert choose(browser, "sort", "map") == MAPS[::-1]

        dead = metrics.loc[~metrics["oip_alive"], "map"].tolist()
        assert DEAD_MAP in dead and len(dead) < len(MAPS)
        assert choose(browser, "dead-only", True) == dead[::-1]  # still sorted by map, descending
        assert browser.evaluate("document.getElementById('shown').textContent") == str(len(dead))
        assert choose(browser, "dead-only", False) == MAPS[::-1]
        shot = browser.screenshot(tmp_path / "report.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        browser.close()
