"""A virtual sound card for tests: PulseAudio (Debian's) as a user daemon, reached by
PortAudio through the ALSA ``pulse`` plugin.

- The microphone is ``module-pipe-source``: a FIFO that ``Mic`` writes 16 kHz PCM into, paced
  like a real microphone (silence between utterances, or nothing at all to stall it).
- The speaker is ``module-null-sink``; ``parec`` records its monitor and every 20 ms read
  is stamped with its arrival time, so a test can say *when* the answer played.

``missing()`` says which package is absent (``make install-test`` installs them where apt
and root are available); tests skip with that reason.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

RATE = 16000
CHUNK = 320  # 20 ms
PULSE_PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu/alsa-lib", "/usr/lib/aarch64-linux-gnu/alsa-lib",
                     "/usr/lib/alsa-lib", "/usr/lib64/alsa-lib")


def missing() -> str | None:
    """None when the rig can run, else what is missing (for the skip reason)."""
    for exe, pkg in (("pulseaudio", "pulseaudio"), ("pactl", "pulseaudio-utils"),
                     ("parec", "pulseaudio-utils")):
        if shutil.which(exe) is None:
            why = f"`{exe}` not found (apt package {pkg})"
            return why + "; `make install-test` installs it where apt-get and root are available"
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio2 is not installed"
    if not any(Path(d, "libasound_module_pcm_pulse.so").exists() for d in PULSE_PLUGIN_DIRS):
        return "the ALSA pulse plugin is not installed (apt package libasound2-plugins)"
    return None


class SoundCard:
    """Start with ``start()``; ``env`` is what a client process needs to find it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.fifo = self.root / "mic.fifo"
        self.socket = self.root / "pulse.sock"
        self.env = dict(os.environ, PULSE_SERVER=f"unix:{self.socket}", HOME=str(self.root),
                        XDG_RUNTIME_DIR=str(self.root / "run"), PULSE_COOKIE=str(self.root / "cookie"))
        self._daemon: subprocess.Popen | None = None
        self._parec: subprocess.Popen | None = None
        self.mic: Mic | None = None

    def start(self) -> None:
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        script = self.root / "default.pa"
        script.write_text(
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
            "load-module module-null-sink sink_name=speaker rate=16000 channels=1\n"
            f"load-module module-pipe-source source_name=mic file={self.fifo} format=s16le "
            f"rate={RATE} channels=1\n"
            "set-default-sink speaker\nset-default-source mic\n")
        log = open(self.root / "pulseaudio.log", "wb")
        self._daemon = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1",
             "--disable-shm=yes", "--use-pid-file=no", "-v"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ok = subprocess.run(["pactl", "list", "short", "sources"], env=self.env,
                                capture_output=True, text=True)
            if ok.returncode == 0 and "mic" in ok.stdout and self.fifo.exists():
                break
            if self._daemon.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {(self.root / 'pulseaudio.log').read_text()[-800:]}")
            time.sleep(0.2)
        else:
            raise RuntimeError("pulseaudio did not come up in 20 s")
        self.mic = Mic(self.fifo)
        # The monitor delivers nothing while the null sink idles, so sample counts are not
        # a clock: each 20 ms read is stamped with its arrival time instead.
        self._parec = subprocess.Popen(
            ["parec", "--device=speaker.monitor", "--format=s16le", f"--rate={RATE}", "--channels=1",
             "--raw", "--latency-msec=20"], env=self.env, stdout=subprocess.PIPE)
        self._levels: list[tuple[float, float]] = []  # (arrival time, rms) per 20 ms
        threading.Thread(target=self._record, daemon=True).start()

    def _record(self) -> None:
        while True:
            data = self._parec.stdout.read(CHUNK * 2)
            if not data:
                return
            x = np.frombuffer(data[: len(data) // 2 * 2], np.int16).astype(np.float32) / 32768.0
            self._levels.append((time.monotonic(), float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0))

    def loud_spans(self, since: float = 0.0, threshold: float = 0.01) -> list[tuple[float, float]]:
        """(start, end) times (monotonic) when the speaker played sound, gaps < 0.35 s merged."""
        spans: list[tuple[float, float]] = []
        for t, rms in list(self._levels):
            if t < since or rms < threshold:
                continue
            if spans and t - spans[-1][1] < 0.35:
                spans[-1] = (spans[-1][0], t)
            else:
                spans.append((t - CHUNK / RATE, t))
        return spans

    def loud_for(self, min_s: float = 0.3, threshold: float = 0.01) -> bool:
        """Whether the speaker is playing sound that began at least ``min_s`` ago.

        One loud 20 ms chunk is not yet an answer playing: a synthesised sentence can open
        with a click before a soft onset, and speech timed against that click can start
        before any word is audible."""
        spans = self.loud_spans(threshold=threshold)
        if not spans:
            return False
        start, end = spans[-1]
        return time.monotonic() - end < 0.1 and end - start >= min_s

    def stop(self) -> None:
        if self.mic is not None:
            self.mic.close()
        for proc in (self._parec, self._daemon):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()


class Mic:
    """Writes PCM into the pipe source at the pace of a real microphone, on its own thread.

    Silence flows between utterances; ``stall()`` stops writing (the FIFO stays open), so
    the device delivers no frames at all, as an unplugged or stalled microphone would.
    """

    def __init__(self, fifo: Path) -> None:
        # Non-blocking: while nobody records, a real microphone's samples are lost, not
        # held back and then written faster than real time.
        self._fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        self.lost_chunks = 0
        self._queue: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._stalled = threading.Event()
        self._closed = threading.Event()
        self.said: list[tuple[float, float]] = []  # wall (start, end) of each utterance written
        threading.Thread(target=self._run, daemon=True).start()

    def say(self, pcm: np.ndarray) -> float:
        """Queue int16 16 kHz speech; returns when it will have been written (monotonic)."""
        with self._lock:
            self._queue.append(np.asarray(pcm, dtype=np.int16))
            backlog = sum(len(p) for p in self._queue) / RATE
        return time.monotonic() + backlog

    def stall(self) -> None:
        self._stalled.set()

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        silence = np.zeros(CHUNK, np.int16)
        next_t = time.monotonic()
        current: np.ndarray | None = None
        pos = 0
        while not self._closed.is_set():
            if self._stalled.is_set():
                time.sleep(0.05)
                continue
            if current is None:
                with self._lock:
                    if self._queue:
                        current, pos = self._queue.pop(0), 0
                        self.said.append((next_t, next_t + len(current) / RATE))
            if current is not None:
                chunk = current[pos:pos + CHUNK]
                pos += CHUNK
                if pos >= len(current):
                    current = None
                chunk = np.pad(chunk, (0, CHUNK - len(chunk)))
            else:
                chunk = silence
            try:
                os.write(self._fd, chunk.tobytes())
            except BlockingIOError:
                self.lost_chunks += 1  # the pipe is full: nobody reads the microphone now
            except OSError:
                return
            next_t += CHUNK / RATE
            # never catch up faster than real time after a late wake-up
            next_t = max(next_t, time.monotonic() - CHUNK / RATE)
            time.sleep(max(0.0, next_t - time.monotonic()))
        os.close(self._fd)
