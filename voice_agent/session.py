"""One conversation on the asyncio loop: listen, think and speak at once, with barge-in.

The loop owns every decision; nothing here runs a model or blocks. Components talk to it
with events (``voice_agent.events``): the listener (VAD + streaming ASR), the model worker,
the TTS worker and the sink each post theirs to ``Session.on_event`` via
``call_soon_threadsafe``. Each event is traced, shown and then fed to the turn-taking
policy below, which is the whole of what this module decides:

- a ``vad.start`` with no answer under way opens a turn; each ``asr.commit`` becomes
  ``listen(text)``, so the thinker reads the words while the user is still speaking;
- ``asr.final`` ends the user's turn: the writer may speak;
- writer tokens go through the chunker to the TTS, and its audio to the sink;
- speech while the answer plays is a barge-in once it is confirmed (see ``EchoGuard``): the
  sink stops, the engine keeps only the answer tokens the user heard, the new words go to
  the listen block and the thinker goes on;
- when the writer is done and its audio has played, the turn ends and its user words and
  *spoken* answer become history.

Stale events (from a response that a barge-in replaced) are dropped by generation id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from voice_agent.asr.policy import as_continued, goes_on
from voice_agent.core.layout import join_heard
from voice_agent.events import (
    AsrCommit, AsrFinal, AsrPartial, AudioPlayEnd, AudioPlayStart, BargeIn, Error, Event,
    LlmWrite, TtsChunkReady, TurnEnd, TurnStart, VadEnd, VadStart,
)
from voice_agent.trace import SessionClock
from voice_agent.worker import BeginTurn, EndOfTurn, Interrupt, Listen, ModelWorker, Revise, Stop

# It states the spoken style only: small models told "you are a voice assistant" answer
# by introducing themselves instead of the question.
DEFAULT_SYSTEM = ("Answer the user briefly, in one to three plain spoken sentences, "
                  "with no lists or markdown.")
MODES = ("async", "think", "nothink", "cascade", "fly")  # fly: a FlyThinker pair


@dataclass
class SessionConfig:
    """How one conversation runs: the decoding mode, the system prompt and barge-in."""

    mode: str = "async"  # async (think while listening and speaking) | think | nothink | cascade | fly (a FlyThinker pair)
    system_prompt: str = DEFAULT_SYSTEM  # the system message of every turn
    headphones: bool = False      # no echo reaches the mic: any confirmed speech barges in
    bargein_min_s: float = 0.25   # speech shorter than this while playing is ignored
    echo_overlap: float = 0.6     # recognised words this much inside recent playback = echo
    end_wait_s: float = 60.0      # after the input ends, how long to wait for the answer
    max_history_turns: int = 8  # past exchanges (user + spoken answer) kept in the prompt
    # While the user speaks, the thinker's draft stands aside whenever the recogniser decodes
    # a pause (the final's pass) or the end-of-turn model runs: the user waits for those,
    # and on a small CPU they share a core with it (voice_agent/urgency.py).
    asr_first: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass
class TurnState:
    turn: int
    gen: int
    user_words: list[str] = field(default_factory=list)
    utterance_at: dict[int, int] = field(default_factory=dict)  # utterance id → its first user_words index
    user_final: str = ""
    ended_listening: bool = False        # asr.final seen: the writer may speak
    decoder_done: bool = False
    answer_tokens: list[str] = field(default_factory=list)   # text of each writer token
    base_tokens: int = 0                 # answer tokens kept at the last barge-in (heard)
    pending_chunks: set[int] = field(default_factory=set)    # given to TTS, not yet played out
    chunk_texts: dict[int, str] = field(default_factory=dict)
    playing_started: bool = False        # some audio of this answer has played
    interrupted: bool = False
    bargein_pending_since: float | None = None
    asr_lost: bool = False               # the recogniser dropped the open utterance (error)
    decoder_lost: bool = False           # the model worker dropped this answer (error)

    @property
    def user_text(self) -> str:
        return self.user_final or join_heard(self.user_words)

    @property
    def answer_text(self) -> str:
        return "".join(self.answer_tokens).strip()


class EchoGuard:
    """Decides whether speech heard while the assistant plays is the user or the echo.

    With headphones (or a headless replay, where no echo exists) any speech that lasts
    ``bargein_min_s`` barges in. With speakers, the recogniser must confirm words, and
    words that mostly repeat what was just played are taken for the assistant's own voice.
    """

    def __init__(self, headphones: bool, min_s: float, overlap: float) -> None:
        self.headphones, self.min_s, self.overlap = headphones, min_s, overlap
        self.recent_played = ""

    def on_played(self, text: str) -> None:
        self.recent_played = (self.recent_played + " " + text)[-600:]

    def confirms(self, speech_s: float, words: str) -> bool:
        if speech_s < self.min_s:
            return False
        if self.headphones:
            return True
        heard = _words(words)
        if not heard:
            return False
        played = set(_words(self.recent_played))
        echo = sum(w in played for w in heard) / len(heard)
        return echo < self.overlap


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class Session:
    """Wires listener → worker → chunker → TTS → sink for one conversation.

    Components are made by factories once the loop runs, because each gets the session's
    thread-safe ``post`` as its event callback. ``await session.run(frames, stop)``
    closes every component and the trace's last lines in every case: end of input,
    Ctrl-C (``stop``) and component failures.
    """

    def __init__(self, *, clock: SessionClock, trace: Any, config: SessionConfig,
                 worker_factory: Callable[[Callable], ModelWorker],
                 listener_factory: Callable[[Callable[[Event], None]], Any],
                 tts_factory: Callable[[Callable[[Event], None], Any], Any],
                 sink_factory: Callable[[Callable[[Event], None]], Any],
                 chunker_factory: Callable[[int], Any], echo_possible: bool = False,
                 view: Callable[[Event], None] | None = None) -> None:
        self.clock, self.trace, self.config = clock, trace, config
        self._view = view
        self._factories = (worker_factory, listener_factory, tts_factory, sink_factory)
        self._chunker_factory = chunker_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self.history: list[dict[str, str]] = []
        self.turns: list[TurnState] = []
        self.cur: TurnState | None = None
        self._gen = 0
        self._turn_no = 0
        # A headless replay has no acoustic path from speaker to mic: no echo to guard.
        self.guard = EchoGuard(config.headphones or not echo_possible, config.bargein_min_s,
                               config.echo_overlap)
        self.failed: str | None = None  # a fatal error: the session stops (exit code 1)
        self.faults: list[str] = []     # recovered errors: the session went on (docs/reliability.md)
        self._gen_turn: dict[int, int] = {}  # answer generation -> turn number

    # ------------------------------------------------------------ running

    async def run(self, frames: AsyncIterator[Any], stop: asyncio.Event | None = None) -> int:
        """Consume frames until they end or ``stop`` is set, let the answer finish, close.

        Returns 0, or 1 when a component failed (``self.failed`` says which and why).
        """
        self._loop = asyncio.get_running_loop()
        make_worker, make_listener, make_tts, make_sink = self._factories
        self.worker = make_worker(self._on_worker_events)
        self.sink = make_sink(self._post)
        self.tts = make_tts(self._post, self.sink)
        self.listener = make_listener(self._post)
        self.worker.start()
        stop = stop or asyncio.Event()
        try:
            async for frame in frames:
                self.listener.feed(frame)
                if self.guard.headphones and self.cur is not None \
                        and self.cur.bargein_pending_since is not None:
                    # Confirm a barge-in on the session clock, frame by frame (the timer
                    # below runs on wall time, which a simulated clock does not follow).
                    self._check_bargein("")
                if self.failed or stop.is_set():
                    break
            if not self.failed and not stop.is_set():
                self.listener.end_of_input()  # closes open speech: its final pass runs
                await self._wait_quiet(stop)
        finally:
            await self._close()
        return 1 if self.failed else 0

    async def _wait_quiet(self, stop: asyncio.Event) -> None:
        """Wait until no turn is open and nothing plays, at most ``end_wait_s``."""
        deadline = self.clock.now() + self.config.end_wait_s
        while self.clock.now() < deadline and not self.failed and not stop.is_set():
            if self.cur is None and not self.listener.in_speech and self.sink.queued_s() <= 0:
                await asyncio.sleep(0.05)  # a final may still be on its way from the ASR thread
                if self.cur is None:
                    return
            await asyncio.sleep(0.02)

    async def _close(self) -> None:
        # The listener first: a decode in flight posts its events when it ends, and they
        # belong inside the open turn, before its turn.end (they land before this resumes).
        await asyncio.to_thread(self.listener.close)
        if self.cur is not None:
            self._end_turn(timed_out=True)
        await asyncio.to_thread(self.worker.shutdown)
        for close in (self.tts.close, self.sink.close):
            try:
                close()
            except Exception as e:  # noqa: BLE001 - closing must go on
                self.trace.write(Error(self.clock.now(), where="close", message=str(e)))
        await asyncio.sleep(0.01)  # callbacks posted by closing threads land before the trace closes

    # ------------------------------------------------------------ event intake

    def _post(self, event: Event) -> None:
        """Thread-safe: any component may call it from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop(loop):
            self.on_event(event)
        else:
            try:
                loop.call_soon_threadsafe(self.on_event, event)
            except RuntimeError:
                pass  # the loop closed between the check and the call: the session is over

    def _on_worker_events(self, gen: int, events: list[Event]) -> None:
        cur = self.cur
        for ev in events:
            if isinstance(ev, Error):
                self.on_event(ev)
                if ev.recovered and cur is not None and self.cur is cur and gen == cur.gen:
                    self._decoder_lost()
            elif cur is not None and gen == cur.gen:
                # The engine counts turns its own way; the trace uses the session's.
                self.on_event(dataclasses.replace(ev, turn=cur.turn) if hasattr(ev, "turn") else ev)
            # else: stale, from a response that a barge-in replaced: dropped on purpose
        if cur is not None and self.cur is cur and gen == cur.gen and cur.ended_listening \
                and not cur.decoder_done and self.worker.decoder.done \
                and getattr(self.worker, "settled", True):
            self._on_decoder_done()

    def on_event(self, ev: Event) -> None:
        shown = ev
        if isinstance(ev, (TtsChunkReady, AudioPlayStart, AudioPlayEnd)) or (
                isinstance(ev, Error) and ev.index >= 0):
            # Chunks are keyed by answer generation, so that a continued answer's chunk 0
            # is never mistaken for the cut one; the trace speaks of turns, the handlers
            # below compare generations.
            shown = dataclasses.replace(ev, turn=self._gen_turn.get(ev.turn, ev.turn))
        self.trace.write(shown)
        if self._view is not None:
            self._view(shown)
        handler = self._handlers.get(type(ev))
        if handler is not None:
            handler(self, ev)

    # ------------------------------------------------------------ policy

    def _on_vad_start(self, ev: VadStart) -> None:
        cur = self.cur
        if cur is None:
            self._begin_turn(ev.t)
        elif cur.ended_listening and not self._audible():
            # The user only paused (a comma, a breath): nothing of the answer has been
            # heard yet, so take back what was written and keep listening.
            self._cut_answer(audible=False)
        elif self._assistant_speaking():
            cur.bargein_pending_since = ev.t
            if self.guard.headphones:
                self._loop.call_later(self.guard.min_s, self._check_bargein, "")

    def _on_vad_end(self, ev: VadEnd) -> None:
        if self.cur is not None:
            self.cur.bargein_pending_since = None
            if self.cur.asr_lost:
                self._settle_lost_utterance()

    def _on_partial(self, ev: AsrPartial) -> None:
        self._check_bargein(ev.text)

    def _on_commit(self, ev: AsrCommit) -> None:
        cur = self.cur
        if cur is None or not ev.text.strip():
            return
        if self._assistant_speaking() and not self._check_bargein(ev.text):
            return  # echo of our own voice, or too short to be the user
        text = ev.text.strip()
        if ev.utterance not in cur.utterance_at and cur.user_words and goes_on(text):
            self._continue_sentence(cur)
        cur.utterance_at.setdefault(ev.utterance, len(cur.user_words))
        cur.user_words.append(text)
        self.worker.send(Listen(cur.gen, text))

    def _continue_sentence(self, cur: TurnState) -> None:
        """The user resumed after a pause that ended an utterance, and the recogniser
        goes on with the sentence (a lower-case word: "… for 90 minutes." then "when does
        it arrive?"): the earlier words' closing mark becomes a comma, for the model (a
        revision of words it holds) and in the turn's text, as one typed sentence reads."""
        joined = as_continued(cur.user_words[-1])
        if joined == cur.user_words[-1]:
            return
        cur.user_words[-1] = joined
        cur.user_final = as_continued(cur.user_final)
        self.worker.send(Revise(cur.gen, join_heard(cur.user_words)))

    def _on_final(self, ev: AsrFinal) -> None:
        cur = self.cur
        if cur is None or self._assistant_speaking():
            return  # a final of speech that did not barge in (echo, a cough)
        if ev.text.strip():
            cur.user_final = (cur.user_final + " " + ev.text.strip()).strip()
        at = cur.utterance_at.get(ev.utterance)
        if ev.revised and ev.text.strip() and at is not None and not cur.ended_listening:
            # A whole decode read some of the words sent to the model differently: the
            # model re-reads the turn's words with this utterance's replaced.
            cur.user_words[at:] = [ev.text.strip()]
            self.worker.send(Revise(cur.gen, join_heard(cur.user_words)))
        if self.listener.in_speech:
            return  # the user already goes on (a comma pause): a later final ends the turn
        if not cur.user_text:
            if not cur.answer_tokens:
                self._end_turn(nothing_heard=True)  # noise opened the VAD, no words came
            return
        if not cur.ended_listening:
            cur.ended_listening = True
            self.worker.send(EndOfTurn(cur.gen))

    def _on_write(self, ev: LlmWrite) -> None:
        cur = self.cur
        if cur is None:
            return
        cur.answer_tokens.append(ev.text)
        if self.config.mode != "cascade":  # the cascade speaks the whole answer at the end
            self._speak(self._chunker.push(ev.text, len(cur.answer_tokens) - 1 - cur.base_tokens))

    def _on_decoder_done(self) -> None:
        cur = self.cur
        cur.decoder_done = True
        if self.config.mode == "cascade":
            for i, text in enumerate(cur.answer_tokens[cur.base_tokens:]):
                self._chunker.push(text, i)
        self._speak(self._chunker.flush())
        self._maybe_end_turn()

    def _speak(self, chunks: list[Any]) -> None:
        for chunk in chunks:
            if chunk.text.strip():
                self.cur.pending_chunks.add(chunk.index)
                self.tts.speak(chunk)

    def _on_play_end(self, ev: AudioPlayEnd) -> None:
        cur = self.cur
        if cur is None or ev.interrupted or ev.turn != cur.gen:
            return
        cur.pending_chunks.discard(ev.index)
        self._maybe_end_turn()

    def _on_play_start(self, ev: AudioPlayStart) -> None:
        if self.cur is not None and ev.turn == self.cur.gen:
            self.cur.playing_started = True
            self.guard.on_played(self.cur.chunk_texts.get(ev.index, ""))

    def _on_chunk_ready(self, ev: TtsChunkReady) -> None:
        if self.cur is not None and ev.turn == self.cur.gen:
            self.cur.chunk_texts[ev.index] = ev.text

    def _on_error(self, ev: Error) -> None:
        if not ev.recovered:
            self.failed = self.failed or f"{ev.where}: {ev.message}"
            return
        # The component went on; the session degrades as docs/reliability.md says.
        self.faults.append(f"{ev.where}: {ev.message}")
        cur = self.cur
        if cur is None:
            return
        if ev.where == "asr" and (self.listener.in_speech or not cur.ended_listening):
            # The utterance was dropped without a final: settle the turn on what was
            # committed, now or (while the user still speaks, maybe over the answer, which
            # may yet become a barge-in) at the end of speech.
            cur.asr_lost = True
            if not self.listener.in_speech:
                self._settle_lost_utterance()
        elif ev.where == "tts" and ev.turn == cur.gen:
            cur.pending_chunks.discard(ev.index)  # that chunk will not be heard
            self._maybe_end_turn()

    def _settle_lost_utterance(self) -> None:
        cur = self.cur
        cur.asr_lost = False
        if cur.ended_listening:
            return  # the answer goes on: the lost speech did not barge in
        if cur.user_text:
            cur.ended_listening = True  # answer the words that were committed
            self.worker.send(EndOfTurn(cur.gen))
        elif not cur.answer_tokens:
            self._end_turn(nothing_heard=True)

    def _decoder_lost(self) -> None:
        """The model worker dropped this turn after a failure (its decoder was reset).

        While the user is still heard, the turn goes on with a fresh decoder: a new
        generation, the same history, the words so far sent again. Once the answer is
        under way, what was written is still spoken and then the turn ends (retrying would
        say it twice). A fault that repeats makes the worker give up (fatal).
        """
        cur = self.cur
        if not cur.ended_listening:
            self._gen += 1
            cur.gen = self._gen
            self._gen_turn[cur.gen] = cur.turn
            self._chunker = self._chunker_factory(cur.gen)
            history = self.history[-2 * self.config.max_history_turns:]
            self.worker.send(BeginTurn(cur.gen, list(history), self.config.system_prompt))
            if cur.user_words:
                self.worker.send(Listen(cur.gen, join_heard(cur.user_words)))
        elif not cur.decoder_done:
            cur.decoder_lost = True
            self._on_decoder_done()

    def interrupt(self) -> bool:
        """A barge-in decided by the client (it stopped playing the answer, as a Realtime
        client's ``conversation.item.truncate`` says): cut here as if the user had spoken.
        False when no answer is playing."""
        if self.cur is None or not self._assistant_speaking():
            return False
        self._cut_answer(audible=True)
        if not self.listener.in_speech:
            # No user speech behind the cut (a stop button, or a truncate that arrived
            # after the user finished): end the turn with what was heard rather than
            # wait for words that may never come.
            self._end_turn()
        return True

    # ------------------------------------------------------------ turn helpers

    def _audible(self) -> bool:
        """Has any audio of the current answer started playing?"""
        return self.cur.playing_started or self.sink.position().index is not None

    def _assistant_speaking(self) -> bool:
        cur = self.cur
        return cur is not None and cur.ended_listening and (
            bool(cur.pending_chunks) or self.sink.queued_s() > 0)

    def _check_bargein(self, words: str) -> bool:
        cur = self.cur
        if cur is None or cur.bargein_pending_since is None or not self._assistant_speaking():
            return False
        if not self.guard.confirms(self.clock.now() - cur.bargein_pending_since, words):
            return False
        self._cut_answer(audible=True)
        return True

    def _cut_answer(self, audible: bool) -> None:
        """Stop the audio, keep only the answer tokens that were heard, reopen listening.

        ``audible``: a real barge-in (logged as one); otherwise the user resumed before
        any answer audio played, and the unheard answer is simply taken back.
        """
        cur = self.cur
        if cur.decoder_lost:
            # No decoder holds this answer any more: stop the audio, close the turn and
            # give the new speech a turn of its own (a fresh BeginTurn).
            self.tts.stop()
            self._end_turn(timed_out=True)
            self._begin_turn(self.clock.now())
            return
        decided = self.clock.now()
        heard = self.tts.stop()  # drops queued chunks and stops the sink under one lock
        # Chunks are keyed by generation: only this answer's count (an earlier turn's
        # answer that played out is in the report too, and must not keep unheard tokens).
        keep = min(cur.base_tokens + heard.tokens_of(cur.gen), len(cur.answer_tokens))
        cur.answer_tokens = cur.answer_tokens[:keep]
        cur.base_tokens = keep
        self._gen += 1
        old_gen, cur.gen = cur.gen, self._gen
        cur.pending_chunks.clear()
        cur.decoder_done, cur.ended_listening, cur.playing_started = False, False, False
        cur.interrupted = cur.interrupted or audible
        cur.bargein_pending_since = None
        self._gen_turn[cur.gen] = cur.turn
        self._chunker = self._chunker_factory(cur.gen)
        if audible:
            self.on_event(BargeIn(decided, turn=cur.turn,
                                  heard_chars=len("".join(cur.answer_tokens)), heard_tokens=keep))
        self.worker.send(Interrupt(old_gen, keep, new_gen=cur.gen))

    def _begin_turn(self, t: float) -> None:
        self._turn_no += 1
        self._gen += 1
        self.cur = TurnState(turn=self._turn_no, gen=self._gen)
        self._gen_turn[self._gen] = self._turn_no
        self._chunker = self._chunker_factory(self._gen)
        self.on_event(TurnStart(t, turn=self._turn_no))
        history = self.history[-2 * self.config.max_history_turns:]
        self.worker.send(BeginTurn(self._gen, list(history), self.config.system_prompt))

    def _maybe_end_turn(self) -> None:
        cur = self.cur
        if cur is not None and cur.decoder_done and not cur.pending_chunks:
            self._end_turn()

    def _end_turn(self, nothing_heard: bool = False, timed_out: bool = False) -> None:
        cur = self.cur
        self.cur = None
        if not cur.decoder_done:
            self.worker.send(Stop(cur.gen))
        user, answer = cur.user_text, cur.answer_text
        self.on_event(TurnEnd(self.clock.now(), turn=cur.turn, user=user, answer=answer,
                              interrupted=cur.interrupted or timed_out))
        if user and answer:
            self.history += [{"role": "user", "content": user},
                             {"role": "assistant", "content": answer}]
        self.turns.append(cur)

    _handlers: dict[type, Callable[["Session", Any], None]] = {
        VadStart: _on_vad_start, VadEnd: _on_vad_end, AsrPartial: _on_partial,
        AsrCommit: _on_commit, AsrFinal: _on_final, LlmWrite: _on_write,
        TtsChunkReady: _on_chunk_ready, AudioPlayStart: _on_play_start,
        AudioPlayEnd: _on_play_end, Error: _on_error,
    }


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
