"""The terminal view of a session: what was heard, what the assistant thinks and says.

``LiveView`` redraws a rich layout a few times a second (mic mode); ``LineView`` prints
one labelled line per milestone (headless replay, logs). Both take the session's events.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from voice_agent.events import (
    AsrCommit, AsrFinal, AsrPartial, AudioPlayStart, BargeIn, Error, Event, LlmDraftCheck,
    LlmThink, LlmWrite, TtsChunkReady, TurnEnd, TurnStart, VadEnd, VadStart,
)

TAIL_CHARS = 600  # the thinker may write thousands of tokens: show the recent ones


class ViewState:
    def __init__(self) -> None:
        self.heard, self.tentative, self.thinking, self.saying = "", "", "", ""
        self.status = "listening"
        self.turn = 0
        self._utterance = (0, 0)  # the open utterance's id, and len(heard) before its words

    def update(self, ev: Event) -> None:
        if isinstance(ev, TurnStart):
            self.turn, self.heard, self.tentative, self.thinking, self.saying = ev.turn, "", "", "", ""
        elif isinstance(ev, VadStart):
            self.status = "user speaking"
        elif isinstance(ev, VadEnd):
            self.status = "user paused"
        elif isinstance(ev, AsrCommit):
            if ev.utterance != self._utterance[0]:
                self._utterance = (ev.utterance, len(self.heard))
            self.heard = (self.heard + " " + ev.text.strip()).strip()
            self.tentative = ""
        elif isinstance(ev, AsrPartial):
            self.tentative = ev.text
        elif isinstance(ev, AsrFinal):
            self.tentative, self.status = "", "thinking"
            if ev.revised and ev.utterance == self._utterance[0]:  # its words, corrected
                self.heard = (self.heard[:self._utterance[1]] + " " + ev.text.strip()).strip()
        elif isinstance(ev, LlmThink):
            self.thinking = (self.thinking + ev.text)[-TAIL_CHARS:]
        elif isinstance(ev, LlmDraftCheck):  # the draft was re-read: these thoughts stand
            self.thinking = ev.text[-TAIL_CHARS:]
        elif isinstance(ev, LlmWrite):
            self.saying += ev.text
        elif isinstance(ev, AudioPlayStart):
            self.status = "speaking"
        elif isinstance(ev, BargeIn):
            self.status, self.saying = "barge-in: listening", self.saying + " [interrupted]"
        elif isinstance(ev, TurnEnd):
            self.status = "listening"


class LiveView:
    """A rich Live layout of three panels, redrawn at most ``fps`` times a second."""

    def __init__(self, console: Console | None = None, fps: int = 8, noise_model: bool = False) -> None:
        self.state = ViewState()
        self.noise_model = noise_model
        self._live = Live(self._render(), console=console or Console(), refresh_per_second=fps,
                          transient=False)

    def __enter__(self) -> "LiveView":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def __call__(self, ev: Event) -> None:
        self.state.update(ev)
        self._live.update(self._render())

    def _render(self) -> Group:
        s = self.state
        heard = Text(s.heard, style="bold")
        heard.append((" " + s.tentative) if s.tentative else "", style="dim italic")
        title = f"turn {s.turn} · {s.status}" + (" · tiny model: output is noise" if self.noise_model else "")
        return Group(
            Panel(heard, title="heard", subtitle=title, border_style="cyan"),
            Panel(Text(s.thinking, style="dim"), title="thinking", border_style="magenta"),
            Panel(Text(s.saying), title="saying", border_style="green"),
        )


class LineView:
    """One line per milestone, on stderr, so stdout stays free for --json."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._wrote_answer = False

    def __call__(self, ev: Event) -> None:
        line = None
        if isinstance(ev, TurnStart):
            line = f"[{ev.t:6.2f}] turn {ev.turn} starts"
        elif isinstance(ev, AsrCommit) and ev.text.strip():
            line = f"[{ev.t:6.2f}] heard: {ev.text.strip()}"
        elif isinstance(ev, AsrFinal):
            said = "user said (corrected)" if ev.revised else "user said"
            line = f"[{ev.t:6.2f}] {said}: {ev.text.strip() or '(nothing)'}"
        elif isinstance(ev, TtsChunkReady):
            line = f"[{ev.t:6.2f}] speak #{ev.index}: {ev.text}"
        elif isinstance(ev, BargeIn):
            line = f"[{ev.t:6.2f}] barge-in: the user heard {ev.heard_tokens} answer tokens"
        elif isinstance(ev, TurnEnd):
            line = f"[{ev.t:6.2f}] turn {ev.turn} ends" + (" (interrupted)" if ev.interrupted else "")
        elif isinstance(ev, Error):
            line = f"[{ev.t:6.2f}] error in {ev.where}: {ev.message}"
        if line:
            print(line, file=self.stream, flush=True)
