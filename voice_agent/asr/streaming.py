"""The ASR thread: takes audio and VAD hints from the event loop, runs the recogniser.

Every public method is cheap and safe to call from the loop: it only enqueues a command.
The thread drains all queued commands before choosing its next piece of work, so a
speculative pass that speech already cancelled never starts, and a final always sees
all the audio that came before the VAD end. With ``threaded=False`` the same commands run
inline on the caller's thread (deterministic tests with a ``SimClock``).
"""

from __future__ import annotations

import logging
import queue
import threading
from contextlib import nullcontext
from typing import Callable

import numpy as np

from voice_agent.asr.config import AsrConfig
from voice_agent.asr.utterance import AsrStats, Heard, UtteranceRecognizer
from voice_agent.asr.whisper import WhisperDecoder
from voice_agent.audio.sources import Clock
from voice_agent.events import Error, Event
from voice_agent.urgency import Urgency

logger = logging.getLogger(__name__)

_CLOSE = ("close",)


class StreamingAsr:
    """Streaming recognition of utterances that a VAD (or the caller) delimits.

    Call order per utterance: ``begin`` → ``push``… (``pause``/``resume`` hints) → ``end``.
    ``emit`` receives ``AsrCommit``/``AsrPartial``/``AsrFinal`` (and ``Error``) on the ASR
    thread; wrap it with ``loop.call_soon_threadsafe`` to get them on the loop.

    ``urgency``: the decodes of a pause (the speculative final pass), the final, and
    updates that start ``urgent_lag_s`` or more behind the audio run marked urgent on it,
    so a model worker drafting thoughts stands aside (urgency.py).
    """

    def __init__(self, decoder: WhisperDecoder, clock: Clock, config: AsrConfig,
                 emit: Callable[[Event], None], *, threaded: bool = True,
                 urgency: Urgency | None = None,
                 on_pass: Callable[[Heard], None] | None = None) -> None:
        self.config = config
        # called on the ASR thread with the pause's pass's hypothesis, as soon as it is
        # there: a reader of those words (the text end-of-turn model) starts at once
        # instead of on the policy's next frame
        self._on_pass = on_pass
        self._urgency = urgency or Urgency()
        self._emit = emit
        self._rec = UtteranceRecognizer(decoder, clock, config, emit)
        self._clock = clock
        self._speculate_at: float | None = None  # audio time of a pending speculative pass
        self._end_at: float | None = None  # speech end of a pending final
        # The pause's pass ran and no speech came since: updates would decode silence, and
        # one started just before the turn ends holds the final back behind it
        self._passed = False
        self._threaded = threaded
        self._queue: queue.Queue[tuple] = queue.Queue()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="asr", daemon=True)
            self._thread.start()

    @property
    def stats(self) -> AsrStats:
        return self._rec.stats

    @property
    def heard(self) -> Heard:
        """The newest hypothesis (safe to read from any thread)."""
        return self._rec.heard

    # -- commands (loop side) -------------------------------------------------------------
    def begin(self, audio_t: float, pcm: np.ndarray | None = None, utterance: int = 0) -> None:
        """Speech started at ``audio_t``; ``pcm`` (int16) is the audio from there on so far;
        ``utterance`` is the id its asr.* events carry."""
        self._send(("begin", audio_t, None if pcm is None else pcm.copy(), utterance))

    def push(self, pcm: np.ndarray) -> None:
        self._send(("audio", pcm))

    def pause(self, audio_t: float) -> None:
        """First silent frame: voiced audio ended at ``audio_t`` (maybe). Decode now."""
        self._send(("pause", audio_t))

    def resume(self) -> None:
        self._send(("resume",))

    def end(self, speech_end: float) -> None:
        """The VAD closed the utterance; voiced audio ended at ``speech_end``."""
        self._send(("end", speech_end))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every command sent so far has been handled (for CLIs and tests)."""
        if not self._threaded:
            return True
        done = threading.Event()
        self._send(("mark", done))
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_CLOSE)
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("ASR thread still busy after %.1f s; leaving it (daemon)", timeout)

    def _send(self, cmd: tuple) -> None:
        if self._threaded:
            self._queue.put(cmd)
        else:
            self._apply(cmd)
            self._work()

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            cmds = [self._queue.get()] if not self._has_work() else []
            while True:
                try:
                    cmds.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            marks = []
            for cmd in cmds:
                if cmd is _CLOSE:
                    return
                if cmd[0] == "mark":
                    marks.append(cmd[1])
                else:
                    self._apply(cmd)
            self._work_once()
            for m in marks:
                if not self._has_pending_final():
                    m.set()
                else:
                    self._queue.put(("mark", m))  # answer once the final went out

    def _apply(self, cmd: tuple) -> None:
        kind = cmd[0]
        if kind == "begin":
            if self._rec.is_open:  # the previous utterance's final comes first, in order
                self._finish(self._end_at if self._end_at is not None else self._rec.buffer_end)
            self._speculate_at = self._end_at = None
            self._passed = False
            self._rec.begin(cmd[1], cmd[2], cmd[3])
        elif kind == "audio":
            self._rec.append(cmd[1])
        elif kind == "pause":
            self._speculate_at = cmd[1] if self.config.speculative_final else None
        elif kind == "resume":
            self._speculate_at = None  # not started yet: speech went on, drop it
            self._passed = False
        elif kind == "end":
            self._end_at = cmd[1]

    def _has_pending_final(self) -> bool:
        return self._end_at is not None

    def _has_work(self) -> bool:
        rec = self._rec
        if not rec.is_open:
            return False
        if self._end_at is not None:
            return True
        if self._speculate_at is not None:
            # A pause is pending: its pass starts after speculate_after_s of silence. An
            # update started now would hold the thread then, and the final, which needs
            # that pass, would wait for both decodes.
            return self._speculation_needed()
        return rec.due() and not self._passed

    def _speculation_needed(self) -> bool:
        """A pause is pending, ``speculate_after_s`` of its silence has arrived, and no
        hypothesis heard the speech and the final's tail yet (one that was in flight when
        the pause came may already have)."""
        if self._speculate_at is None:
            return False
        start_at = self._speculate_at + min(self.config.speculate_after_s, self.config.final_tail_s)
        return not self._rec.covers(self._tail_end()) and self._rec.buffer_end >= start_at - 1e-9

    def _tail_end(self) -> float:
        return self._speculate_at + self.config.final_tail_s

    def _work(self) -> None:
        while self._has_work():
            self._work_once()

    def _work_once(self) -> None:
        """One decode at most: the final first, then a speculative pass, then an update."""
        if not self._has_work():
            return
        try:
            if self._end_at is not None:
                with self._urgency.running():
                    self._finish(self._end_at)
            elif self._speculation_needed():
                pad_to, self._speculate_at, self._passed = self._tail_end(), None, True
                with self._urgency.running():
                    # covers the pause and the tail; its hypothesis may serve the final
                    self._rec.update(pad_to=pad_to)
                if self._on_pass is not None:
                    self._on_pass(self._rec.heard)
            elif self._speculate_at is None and not self._passed and self._rec.due():
                behind = self._rec.buffer_end - self._rec.decoded_until
                with self._urgency.running() if behind >= self.config.urgent_lag_s else nullcontext():
                    self._rec.update()
        except Exception as e:  # a decode failure must not kill the thread: report it
            self._failed(e)

    def _finish(self, speech_end: float) -> None:
        self._end_at = self._speculate_at = None
        try:
            self._rec.finish(speech_end)
        except Exception as e:  # as above: report, drop the utterance, keep listening
            self._failed(e)

    def _failed(self, e: Exception) -> None:
        logger.exception("ASR decode failed")
        self._end_at = self._speculate_at = None
        self._rec.abort()
        self._emit(Error(t=self._clock.now(), where="asr", message=f"{type(e).__name__}: {e}",
                         recovered=True))
