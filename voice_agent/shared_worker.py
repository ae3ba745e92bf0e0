"""One model thread for many sessions: a scheduler over per-session lanes.

The server holds one copy of the model weights. Each connected session gets its own
decoder (an Engine or a Baseline: its own KV arena and turn state, over the shared
model) and a :class:`Lane`, which looks to the session exactly like a
:class:`~voice_agent.worker.ModelWorker` (``start``, ``send``, ``shutdown``, ``decoder``).
A single :class:`SharedModelWorker` thread applies every lane's commands and runs their
steps, one forward pass at a time, so only that thread ever touches model tensors.

Scheduling (what a step goes to, when several lanes have work), in three tiers:

0. *Urgent* lanes: a lane whose writer is decoding (engine state ``writing`` or
   ``thinking_and_writing``) while its session's playback buffer holds less than
   ``low_water_s`` of audio. An answer that is about to run dry would be heard as a
   stall; thinking that is a step late is not heard at all.
1. Lanes that owe an answer: the user has finished (``user_done``), so every step is on
   the way to the next audible word.
2. Lanes still listening: their thinking is ahead-of-time work, done with what is left.

Within a tier, the lane served least recently: round-robin, so one busy session cannot
starve another of its tier.

Batching several sessions' rows into one forward pass is not done: each step is one
lane's own (batch-1 or batch-2) step.

A failing step costs only its own session, as with the single-session worker: the turn
is dropped with a recovered ``Error`` (``ModelWorker._recover``), and after repeated
failures the lane ends with a fatal one; the thread and the other lanes go on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import traceback
from typing import Any, Callable

from voice_agent.events import Error, Event
from voice_agent.trace import SessionClock
from voice_agent.worker import Decoder, ModelWorker, Post, Shutdown

# Engine states in which the writer produces answer tokens (the baselines use the same names).
WRITING_STATES = frozenset({"writing", "thinking_and_writing"})


class Lane(ModelWorker):
    """One session's view of the shared worker: the ModelWorker API, no thread of its own.

    Commands are applied by the shared thread between steps, with the same generation
    rules as ``ModelWorker`` (stale commands are dropped).
    """

    def __init__(self, pool: SharedModelWorker, decoder: Decoder, post: Post,
                 clock: SessionClock, on_exit: Callable[[BaseException | None], None] | None,
                 playback_low: Callable[[], bool] | None) -> None:
        super().__init__(decoder, post, clock, on_exit)
        self._pool = pool
        self._playback_low = playback_low or (lambda: False)
        self._finished = threading.Event()
        self._started = False
        self.last_served = 0  # the pool's step counter when this lane last ran a step
        self.steps = 0

    # ------------------------------------------------------------ loop-side API

    def start(self) -> None:
        self._started = True
        self._pool._add(self)

    def send(self, cmd: Any) -> None:
        super().send(cmd)
        self._pool._wake.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        if not self._started:
            return
        super().send(Shutdown())
        self._pool._wake.set()
        self._finished.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._started and not self._finished.is_set()

    # ------------------------------------------------------------ shared thread

    def drain(self) -> bool:
        """Apply queued commands without blocking; False once Shutdown arrived."""
        return self._drain(block=False)

    @property
    def runnable(self) -> bool:
        return self._active and not self.decoder.done and not self.decoder.idle

    def urgent(self) -> bool:
        """Its writer is decoding while its playback buffer runs low."""
        return getattr(self.decoder, "state", "") in WRITING_STATES and self._playback_low()

    def tier(self) -> int:
        """0 urgent, 1 an answer is owed, 2 still listening (see the module docstring)."""
        if _safe(self.urgent):
            return 0
        return 1 if getattr(self.decoder, "user_done", True) else 2

    def step(self) -> None:
        self.steps += 1
        events = self.decoder.step()
        self._failures = 0
        self._emit(events)

    def fail(self, err: BaseException) -> None:
        """Report a failure to the session, as the single-session worker does."""
        self.error = err
        tb = traceback.extract_tb(err.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "worker"
        self._post(self._gen, [Error(self._clock.now(), where=f"model worker ({where})",
                                     message=f"{type(err).__name__}: {err}")])

    def finish(self, err: BaseException | None) -> None:
        self._finished.set()
        if self._on_exit is not None:
            self._on_exit(err)


class SharedModelWorker:
    """The one model thread of a server. See the module docstring for the policy.

    Args:
        low_water_s: a session whose writer is active and whose playback buffer holds
            less than this many seconds of audio is served first.
    """

    def __init__(self, low_water_s: float = 0.6) -> None:
        self.low_water_s = low_water_s
        self._lanes: list[Lane] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._calls: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []
        self._closed = False
        self._counter = itertools.count(1)
        self.served: dict[int, int] = {}  # id(lane) -> steps, for tests and the bench
        # the last decisions: (id(lane) served, its tier, the tiers of all runnable lanes)
        self.picks: collections.deque[tuple[int, int, dict[int, int]]] = collections.deque(
            maxlen=4096)
        self._thread = threading.Thread(target=self._run, name="shared-model-worker", daemon=True)
        self._thread.start()

    def lane(self, decoder: Decoder, loop: Any, handler: Post, clock: SessionClock, *,
             on_exit: Callable[[BaseException | None], None] | None = None,
             playback_low: Callable[[], bool] | None = None) -> Lane:
        """A lane whose events land on ``loop`` through ``handler(gen, events)``, like
        ``ModelWorker.for_loop``. It joins the schedule when the session starts it."""

        lanes: list[Lane] = []  # the one made below; post needs it

        def post(gen: int, events: list[Event]) -> None:
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(*lanes[0].counted(handler, gen, events))
                except RuntimeError:
                    pass  # the loop closed between the check and the call

        def exit_cb(err: BaseException | None) -> None:
            if on_exit is not None and not loop.is_closed():
                loop.call_soon_threadsafe(on_exit, err)

        lanes.append(Lane(self, decoder, post, clock, exit_cb, playback_low))
        return lanes[0]

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn`` on the model thread between steps (building a decoder allocates its
        arena there, so no other thread touches model tensors); returns its future."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                fut.set_exception(RuntimeError("the model worker is closed"))
                return fut
            self._calls.append((fn, fut))
        self._wake.set()
        return fut

    @property
    def sessions(self) -> int:
        with self._lock:
            return len(self._lanes)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    # ------------------------------------------------------------ the thread

    def _add(self, lane: Lane) -> None:
        with self._lock:
            self._lanes.append(lane)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # cleared before looking, so a later send wakes the wait
            with self._lock:
                closed, lanes, calls = self._closed, list(self._lanes), self._calls
                self._calls = []
            for fn, fut in calls:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:  # noqa: BLE001 - handed to the caller
                        fut.set_exception(e)
            for lane in lanes:
                if closed or not self._drain(lane):
                    self._remove(lane, None)
            if closed:
                return
            lane = self._pick([ln for ln in lanes if not ln._finished.is_set() and ln.runnable])
            if lane is None:
                self._wake.wait(0.5)
                continue
            lane.last_served = next(self._counter)
            self.served[id(lane)] = self.served.get(id(lane), 0) + 1
            try:
                try:
                    lane.step()
                except Exception as e:  # noqa: BLE001 - as the single worker: the turn is
                    lane._recover(e)    # dropped, the session goes on (re-raised when fatal)
            except BaseException as e:  # noqa: BLE001 - one session's failure, not the server's
                lane.fail(e)
                self._remove(lane, e)

    def _drain(self, lane: Lane) -> bool:
        try:
            return lane.drain()
        except BaseException as e:  # noqa: BLE001 - a command that failed ends its lane
            lane.fail(e)
            return False

    def _pick(self, runnable: list[Lane]) -> Lane | None:
        if not runnable:
            return None
        tiers = {id(ln): ln.tier() for ln in runnable}
        lane = min(runnable, key=lambda ln: (tiers[id(ln)], ln.last_served))
        self.picks.append((id(lane), tiers[id(lane)], tiers))
        return lane

    def _remove(self, lane: Lane, err: BaseException | None) -> None:
        with self._lock:
            if lane in self._lanes:
                self._lanes.remove(lane)
        if not lane._finished.is_set():
            lane.finish(err)


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a sink being closed must not stop the scheduler
        return False
