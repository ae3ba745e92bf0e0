"""The model worker thread: it alone owns the model, the KV arena and the decoding engine.

Commands arrive on a thread-safe queue and are applied between decoding steps; the events
that steps produce are posted to the asyncio loop with ``call_soon_threadsafe``. Every
command and event carries the generation id of the response it belongs to, so the loop
drops stale events after a barge-in or reset without any lock held across threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from voice_agent.events import Error, Event
from voice_agent.trace import SessionClock
from voice_agent.urgency import Urgency


class Decoder(Protocol):
    """What the worker drives: the async Engine and the baselines all look like this."""

    done: bool
    idle: bool

    def begin_turn(self, history: list[dict[str, str]], system: str | None = None) -> list[Event]: ...
    def listen(self, text: str) -> list[Event]: ...
    def revise(self, text: str) -> list[Event]: ...
    def end_of_turn(self) -> list[Event]: ...
    def interrupt(self, heard_tokens: int) -> list[Event]: ...
    def step(self) -> list[Event]: ...


# One type per command, as with events.
@dataclass
class BeginTurn:
    gen: int
    history: list[dict[str, str]] = field(default_factory=list)
    system: str | None = None


@dataclass
class Listen:
    gen: int
    text: str


@dataclass
class Revise:
    """The recogniser corrected words already sent: the turn's words are now ``text``."""

    gen: int
    text: str


@dataclass
class EndOfTurn:
    gen: int


@dataclass
class Interrupt:
    """Keep only the ``heard_tokens`` answer tokens; later events carry ``new_gen``, so the
    loop can tell them from tokens already in flight for the replaced answer."""

    gen: int
    heard_tokens: int
    new_gen: int


@dataclass
class Stop:
    """Stop decoding for this generation (the session is ending or the turn was dropped)."""

    gen: int


@dataclass
class Shutdown:
    gen: int = -1


Command = BeginTurn | Listen | Revise | EndOfTurn | Interrupt | Stop | Shutdown
MAX_FAILURES = 3  # failures in a row (no good step between) after which the worker gives up
ASIDE_POLL_S = 0.05  # while standing aside, commands are still applied this often
logger = logging.getLogger(__name__)
Post = Callable[[int, list[Event]], None]


class ModelWorker:
    """Runs ``decoder`` on its own thread. ``post(gen, events)`` is called on that thread;
    use :meth:`for_loop` to have it land on an asyncio loop instead.

    ``urgency``: while the decoder thinks with the user still speaking (state
    ``listening``), it takes no step as long as urgent work runs (the recogniser's pass over
    a pause, the end-of-turn model; ``voice_agent/urgency.py``).
    """

    def __init__(self, decoder: Decoder, post: Post, clock: SessionClock,
                 on_exit: Callable[[BaseException | None], None] | None = None,
                 urgency: Urgency | None = None) -> None:
        self.decoder = decoder
        self._urgency = urgency
        self._post = post
        self._clock = clock
        self._on_exit = on_exit
        self._q: queue.Queue[Command] = queue.Queue()
        self._gen = -1
        self._active = False  # a turn is under way and the decoder may step
        self._failures = 0  # failed steps/commands since the last good step
        self._sent = self._applied = 0  # commands sent / applied (see ``quiescent``)
        self._blocked = False  # the thread waits on the queue
        self.posted = self.handled = 0  # event batches posted to the loop / handled there
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)

    @classmethod
    def for_loop(cls, decoder: Decoder, loop: Any, handler: Post, clock: SessionClock,
                 on_exit: Callable[[BaseException | None], None] | None = None,
                 urgency: Urgency | None = None) -> "ModelWorker":
        workers: list[ModelWorker] = []  # the one made below; post needs it

        def post(gen: int, events: list[Event]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(*workers[0].counted(handler, gen, events))

        def exit_cb(err: BaseException | None) -> None:
            if on_exit is not None and not loop.is_closed():
                loop.call_soon_threadsafe(on_exit, err)

        workers.append(cls(decoder, post, clock, exit_cb, urgency))
        return workers[0]

    def counted(self, handler: Post, gen: int, events: list[Event]) -> tuple[Callable, ...]:
        """(callback, args) for ``call_soon_threadsafe`` that keep ``settled`` true."""
        self.posted += 1
        return self._handled, self.posted, handler, gen, events

    def _handled(self, seq: int, handler: Post, gen: int, events: list[Event]) -> None:
        self.handled = seq
        handler(gen, events)

    @property
    def settled(self) -> bool:
        """On the loop: every batch posted so far has reached the handler. The decoder's
        live ``done`` is only the truth about the events handled when this holds (a
        batch with the answer's last words may still be queued behind this one)."""
        return self.handled >= self.posted

    # ------------------------------------------------------------ loop-side API

    def start(self) -> None:
        self._thread.start()

    def send(self, cmd: Command) -> None:
        self._sent += 1
        self._q.put(cmd)

    @property
    def quiescent(self) -> bool:
        """The thread waits for a command, and every command sent was applied: nothing
        happens until the next ``send``. For lock-step drivers on a simulated clock
        (tests), where compute takes no session time."""
        return self._blocked and self._applied == self._sent

    def shutdown(self, timeout: float = 5.0) -> None:
        self._q.put(Shutdown())
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        err: BaseException | None = None
        try:
            while True:
                # Block only when there is nothing to decode; otherwise take what has
                # arrived and go on stepping, so commands land at token boundaries.
                must_wait = not self._active or self.decoder.done or self.decoder.idle
                if not self._drain(block=must_wait):
                    break
                if self._active and not self.decoder.done and not self.decoder.idle:
                    if self._stands_aside():
                        continue
                    try:
                        events = self.decoder.step()
                    except Exception as e:  # noqa: BLE001 - see _recover
                        self._recover(e)
                        continue
                    self._failures = 0
                    self._emit(events)
        except BaseException as e:  # noqa: BLE001 - the loop must hear of any failure
            err = e
            self.error = e
            self._post(self._gen, [Error(self._clock.now(), where=f"model worker ({_where(e)})",
                                         message=f"{type(e).__name__}: {e}")])
        finally:
            if self._on_exit is not None:
                self._on_exit(err)

    def _stands_aside(self) -> bool:
        """A draft of thoughts waits while urgent work runs; True: it waited (a while)."""
        u = self._urgency
        if u is None or not u.active or getattr(self.decoder, "state", None) != "listening":
            return False
        u.wait_clear(ASIDE_POLL_S)
        return True

    def _drain(self, block: bool) -> bool:
        """Apply queued commands; False once Shutdown arrives."""
        while True:
            self._blocked = block
            try:
                cmd = self._q.get(block=block, timeout=None)
            except queue.Empty:
                return True
            finally:
                self._blocked = False
            block = False
            if isinstance(cmd, Shutdown):
                return False
            try:
                self._apply(cmd)
            except Exception as e:  # noqa: BLE001 - see _recover
                self._recover(e)
            finally:
                self._applied += 1

    def _recover(self, e: Exception) -> None:
        """A failed step or command costs the answer under way, not the session: post a
        recovered ``Error``, forget the turn (the decoder is reset; the next ``BeginTurn``
        starts clean) and wait for commands. ``MAX_FAILURES`` failures in a row with no
        good step between, or running out of memory, are not recoverable: re-raised."""
        self._failures += 1
        if self._failures >= MAX_FAILURES or isinstance(e, MemoryError):
            raise e
        logger.error("model worker: %s: %s (the turn is dropped)", type(e).__name__, e)
        self._post(self._gen, [Error(self._clock.now(), where=f"model worker ({_where(e)})",
                                     message=f"{type(e).__name__}: {e}", recovered=True)])
        self._active = False
        reset = getattr(self.decoder, "reset", None)
        if reset is not None:
            reset()

    def _apply(self, cmd: Command) -> None:
        if isinstance(cmd, BeginTurn):
            self._gen, self._active = cmd.gen, True
            self._emit(self.decoder.begin_turn(cmd.history, cmd.system))
            return
        if cmd.gen != self._gen:
            return  # a command for a response that is already gone
        if isinstance(cmd, Listen):
            self._emit(self.decoder.listen(cmd.text))
        elif isinstance(cmd, Revise):
            self._emit(self.decoder.revise(cmd.text))
        elif isinstance(cmd, EndOfTurn):
            self._emit(self.decoder.end_of_turn())
        elif isinstance(cmd, Interrupt):
            self._gen = cmd.new_gen
            self._emit(self.decoder.interrupt(cmd.heard_tokens))
        elif isinstance(cmd, Stop):
            self._active = False

    def _emit(self, events: list[Event] | None) -> None:
        if events:
            self._post(self._gen, list(events))


def _where(e: BaseException) -> str:
    """file:line where ``e`` was raised, for the trace."""
    tb = traceback.extract_tb(e.__traceback__)
    return f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "worker"
