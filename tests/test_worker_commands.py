"""How the model worker applies its queue: words that arrive together are read in one
insert, in order, and a response's commands never mix with another's."""

from __future__ import annotations

import time

from voice_agent.trace import SessionClock
from voice_agent.worker import BeginTurn, EndOfTurn, Listen, ModelWorker


class _Recording:
    """A decoder with nothing to step; it records what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.done, self.idle = False, True

    def begin_turn(self, history, system=None):
        self.calls.append(("begin",))
        return []

    def listen(self, text):
        self.calls.append(("listen", text))
        return []

    def end_of_turn(self):
        self.calls.append(("end",))
        return []


def _settled(worker: ModelWorker) -> None:
    deadline = time.monotonic() + 5
    while not worker.quiescent:
        assert time.monotonic() < deadline, "the worker did not apply its queue"
        time.sleep(0.005)


def test_words_queued_together_are_one_listen_and_the_next_command_keeps_its_place():
    dec = _Recording()
    worker = ModelWorker(dec, lambda gen, events: None, SessionClock())
    # Queued before the thread starts, as a final's last word, its end mark and the end of
    # the turn arrive together from the recogniser.
    for cmd in (BeginTurn(1), Listen(1, "Take two steps"), Listen(1, "forward"), Listen(1, "."),
                EndOfTurn(1), Listen(1, "again"), Listen(2, "for a response already gone")):
        worker.send(cmd)
    worker.start()
    try:
        _settled(worker)
        assert dec.calls == [("begin",), ("listen", "Take two steps forward."), ("end",),
                             ("listen", "again")]
        worker.send(Listen(1, "one more"))  # one piece alone is passed as it came
        _settled(worker)
        assert dec.calls[-1] == ("listen", "one more")
    finally:
        worker.shutdown()
