"""The page in a real browser: Debian's chromium, headless, driven by Playwright, with a
sample WAV as its fake microphone. The transcript, the thoughts and played answer audio
are asserted through the DOM; a screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from server_rig import REPO, SAMPLES, server, tiny_host
from voice_agent.audio.wav import read_wav, write_wav

pytestmark = pytest.mark.heavy
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("VOICE_AGENT_ARTIFACTS", REPO / "runs" / "test-artifacts"))


def _browser_or_skip():
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):  # CI's `make test` installs it: a missing browser is a bug there
            pytest.fail(f"no chromium at {CHROMIUM} although `make install-test` installs it")
        pytest.skip("no chromium: `make install-test` installs it with apt-get (needs root); "
                    "elsewhere install Debian's chromium package")
    return pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")


def test_page_hears_thinks_and_speaks_in_headless_chromium(tmp_path):
    sync_api = _browser_or_skip()
    # The fake microphone: a pause, the question, then silence so the turn can end.
    rate = 16_000
    q = read_wav(SAMPLES / "capital_of_france.wav", rate)
    mic = write_wav(tmp_path / "mic.wav", np.concatenate(
        [np.zeros(rate, np.float32), q, np.zeros(8 * rate, np.float32)]), rate)
    host = tiny_host(max_answer=24)
    try:
        with server(host, tmp_path / "runs") as s, sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}%noloop"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                logs: list[str] = []
                page.on("console", lambda m: logs.append(m.text))
                page.goto(f"http://127.0.0.1:{s.port}/")
                page.click("#start")
                page.wait_for_function("document.body.dataset.state === 'connected'", timeout=15_000)
                page.wait_for_function(
                    "document.querySelector('#heard').textContent.includes('capital')", timeout=40_000)
                page.wait_for_function("document.body.dataset.turns >= 1", timeout=60_000)
                page.wait_for_function("Number(document.body.dataset.playedMs) > 500", timeout=20_000)
                heard = page.inner_text("#heard")
                thinking = page.inner_text("#thinking")
                saying = page.inner_text("#saying")
                page.wait_for_selector("#latency tbody tr", timeout=10_000)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "server_browser.png"), full_page=True)
            finally:
                browser.close()
    finally:
        host.close()
    assert "capital" in heard, (heard, logs)  # not "France": see test_asr_cli
    assert len(thinking.strip()) > 10 and saying.strip(), (thinking, saying)
    assert (ARTIFACTS / "server_browser.png").stat().st_size > 10_000
