"""Caches under models/ built by several processes at once (two serve --ray replicas or
two test workers on a fresh clone): one builds, the others wait and reuse it whole."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from voice_agent.cachefiles import atomic_write_text, build_lock

REPO = Path(__file__).resolve().parent.parent


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "table.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.json"]


def test_build_lock_lets_one_builder_in_at_a_time(tmp_path):
    inside, overlaps = [0], []

    def build() -> None:
        with build_lock(tmp_path / "cache"):
            inside[0] += 1
            overlaps.append(inside[0])
            time.sleep(0.05)
            inside[0] -= 1

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


def test_two_processes_join_the_embedded_whisper_at_once(tmp_path):
    """Both resolve the same model into an empty models dir; the joined file is whole."""
    code = ("from voice_agent.models import resolve_model, sha256_file, load_manifest;"
            "r = resolve_model('asr', 'base');"
            "e = load_manifest()['asr']['embedded']['base'];"
            "assert sha256_file(r.path / 'model.bin') == e['joined_sha256'], 'torn file';"
            "print('ok')")
    env = {"VOICE_AGENT_MODELS_DIR": str(tmp_path / "models"), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert not list((tmp_path / "models").rglob("*.partial"))
