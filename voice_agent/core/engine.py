"""The async decoding state machine: think while listening, write while thinking.

One ``step()`` runs at most one forward pass: a small prefill (the think opening, the
writer split), a control question, or one decoding step in which the thinker and the
writer advance together as a batch of two rows over one KV arena. Commands (``listen``,
``end_of_turn``, ``interrupt``, ``begin_turn``, ``reset``) are applied between steps, on the
thread that owns the engine. Everything returns the events it produced, stamped with the
session clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import torch

from voice_agent.core.attention import ArenaCache, RopeTables, forward_step, make_plan
from voice_agent.core.attention_lse import use_view_attention
from voice_agent.core.compiled import CompileError, CompiledDecode, wanted
from voice_agent.core.decode import (EngineConfig, DecoderBase, TextStream, control_decision,
                                     ends_paragraph, forbid_bias, pick_tokens)
from voice_agent.core.draft import resume_at
from voice_agent.core.kv import ArenaShape, BlockArena, arena_dtype
from voice_agent.core.layout import Layout, Prompts, Template, shared_prefix
from voice_agent.core.window import check_fixed, drop_front, fit_history, tokens_to_drop
from voice_agent.errors import VoiceAgentError
from voice_agent.events import Event, LlmControl, LlmDraftCheck, LlmListen, LlmStep, LlmThink, LlmWindow, LlmWrite
from voice_agent.trace import SessionClock

logger = logging.getLogger(__name__)

LISTENING, THINKING, BOTH, WRITING, DONE = (
    "listening", "thinking", "thinking_and_writing", "writing", "done")


def load_model(name: str | None, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """(model, tokenizer) through the project's model resolution."""
    from voice_agent.models import load_llm

    model, tok = load_llm(name, device=device, dtype=dtype)
    return model.eval(), tok


class Engine(DecoderBase):
    """AsyncReasoning-style thinker + writer over one block KV arena.

    Args:
        model, tokenizer: a stock transformers causal LM (Qwen3, Qwen2, Llama families)
            and its tokenizer with a chat template. The model's config is switched to
            the view attention (it still serves plain calls without a plan).
        config: budgets, capacities, sampling.
        clock: the session clock that stamps every event.
        layout: which blocks each stream sees.
        template: the prompt family; by default Qwen3 when the tokenizer has think
            tokens, else text markers.
    """

    def __init__(self, model, tokenizer, config: EngineConfig | None = None,
                 clock: SessionClock | None = None, layout: Layout | None = None,
                 template: Template | None = None) -> None:
        self.model, self.config = model, config or EngineConfig()
        self.clock = clock or SessionClock()
        self.layout = layout or Layout()
        self.prompts = Prompts(tokenizer, template)
        use_view_attention(model, eager=self.config.eager_attention)  # fused on CUDA
        cfg = model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        p = next(model.parameters())
        self.device = p.device
        self.arena = BlockArena(self.config.capacity, ArenaShape(
            cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim),
            dtype=arena_dtype(p.dtype, p.device), device=p.device)
        self.cache = ArenaCache(self.arena)
        self.rope = RopeTables(model)
        self.compiled = None  # decode steps as one compiled graph (core/compiled.py)
        if wanted(self.config.compile, p.device) and not self.config.eager_attention:
            try:
                self.compiled = CompiledDecode(model, self.arena,
                                               regional=self.config.compile == "regional")
            except CompileError as e:
                self._compile_failed(e)
        V = model.get_output_embeddings().out_features  # also for quantised heads
        self.bias = {k: forbid_bias(v, V, p.device) for k, v in self.prompts.forbidden().items()}
        self.writer_stop = self.prompts.writer_stop_ids()
        self.think_open_ids = self.prompts.ids(self.prompts.think_open_text())
        self.question_ids = self.prompts.ids(self.prompts.template.question)
        check_fixed(self.arena, {
            "think_open": len(self.think_open_ids), "question": len(self.question_ids),
            "writer_split": max(len(self.prompts.ids(self.prompts.template.writer_split)),
                                len(self.prompts.ids(self.prompts.template.think_close)))})
        s = self.config.sampling
        self.generator = torch.Generator(device=p.device).manual_seed(s.seed) if s else None
        self.turn = 0
        self.steps = 0
        self._started = False
        self._new_turn_state()

    @classmethod
    def from_pretrained(cls, name: str | None = None, config: EngineConfig | None = None,
                        clock: SessionClock | None = None, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Engine:
        """Load ``name`` ("tiny", "embedded", a model name or a path) and build the engine."""
        model, tok = load_model(name, device, dtype)
        return cls(model, tok, config, clock)

    def warm_up(self) -> None:
        """The base warm-up, and with compile on, every decode graph built now."""
        super().warm_up()
        if self.compiled is None:
            return
        lay = self.layout
        try:
            self.compiled.warm_up([[lay.thinker], [lay.thinker, lay.writer], [lay.writer]])
        except VoiceAgentError:
            raise
        except Exception as e:
            self._compile_failed(e)
        self.reset()

    def _compile_failed(self, e: Exception) -> None:
        """compile on/regional was asked for by name: one clear error. auto (CUDA): the eager step
        is always there, and a graph that does not build on this device must not end a
        session: say so in the log and go on eager."""
        if self.config.compile != "auto":
            if isinstance(e, CompileError):
                raise e
            raise CompileError(f"the compiled decode step failed: {type(e).__name__}: {e}") from None
        logger.warning("compiled decode step unavailable here, running eager: %s: %s",
                       type(e).__name__, e)
        self.compiled = None

    # ------------------------------------------------------------ commands

    def begin_turn(self, history: Sequence[dict] = (), system: str | None = None) -> list[Event]:
        """Start a new turn: the prompt block holds the system text and the history."""
        self.arena.reset()
        self._new_turn_state()
        self.turn += 1
        self._started = True
        ids, left_out = fit_history(self.prompts.prompt_ids, history, system,
                                    self.arena.capacity["prompt"])
        events: list[Event] = []
        if left_out:  # the oldest history gave way (core/window.py)
            events.append(LlmWindow(t=self.clock.now(), block="prompt", messages=left_out,
                                    kept=len(ids), turn=self.turn))
        return events + [self._prefill("prompt", (("prompt",)), ids, logits=False)[1]]

    def listen(self, text: str) -> list[Event]:
        """Append the user's words to the listen block now. Later blocks only shift."""
        if not self._started:
            self.begin_turn()
        ids = self.prompts.listen_ids(text, first=self.arena.length["listen"] == 0)
        if not ids:
            return []
        window: list[Event] = []
        cap = self.arena.capacity["listen"]
        if len(ids) > cap:  # one piece longer than the window: its newest words count
            window.append(LlmWindow(t=self.clock.now(), block="listen", dropped=len(ids) - cap,
                                    kept=cap, turn=self.turn))
            ids = ids[-cap:]
        *window_more, step = self._insert_listen(ids)
        self._mark_reread()
        return [*window, *window_more,
                LlmListen(t=step.t, text=self.prompts.decode(ids), tokens=len(ids), turn=self.turn),
                step]

    def revise(self, text: str) -> list[Event]:
        """The recogniser corrected words it had sent: the turn's words are now ``text``.

        The listen block keeps its longest prefix of ``text``'s tokens and takes the rest
        in place of what followed (later blocks only shift, as for any insertion); the
        draft is re-read with them at once. Once the user is done, or when the block no
        longer holds the words alone (a window cut its front; the turn-end note is in it),
        the words stand as they are.
        """
        if not self._started or self.user_done or self.listen_settled or self.turn_end_noted:
            return []
        ids = self.prompts.listen_ids(text, first=True)
        old = self.listen_ids
        keep = shared_prefix(old, ids)
        if not ids or len(ids) > self.arena.capacity["listen"] or ids == old:
            return []
        self.arena.truncate("listen", keep)
        self.listen_ids, self.listen_text = old[:keep], self.prompts.decode(old[:keep])
        if keep < len(ids):
            *window, step = self._insert_listen(ids[keep:])
        else:  # only words taken away: nothing to prefill, but the draft read them
            window, step = [], LlmStep(t=self.clock.now(), state="listen_insert", ms=0.0,
                                       batch=1, step=self.steps, turn=self.turn)
            self.heard_pieces += 1
        self._split_changed()
        self._mark_reread(force=True)
        return [*window, LlmListen(t=step.t, text=self.prompts.decode(ids[keep:]),
                                   tokens=len(ids) - keep, replaced=len(old) - keep,
                                   turn=self.turn),
                step]

    def _mark_reread(self, force: bool = False) -> None:
        """After new words: the draft is re-read when due (or ``force``d), before the next
        step rather than now, so words that arrive together (a final's last word and its end
        mark come a few ms apart, as separate commands) cost one re-read, not one each; in
        spoken navigate a re-read took ~0.1-0.25 s, on the path to the answer."""
        paused, self.thinker_paused = self.thinker_paused, False
        if force or paused or len(self.thoughts.ids) - self.draft_size >= self.config.check_listen_every:
            self.reread_due = True

    def _reread_draft(self) -> list[Event]:
        """The re-read ``_mark_reread`` asked for, before the next step."""
        self.reread_due = False
        checked = self._check_draft()
        if self.draft_ended:  # a re-read could not undo its end (a windowed draft): it waits
            self.thinker_paused = True
        return checked

    def _insert_listen(self, ids: list[int]) -> list[Event]:
        """Prefill ``ids`` at the end of the listen block (windowed first): any window
        events, then the step."""
        window = self._make_room("listen", len(ids))
        t0 = time.perf_counter()
        self._prefill("listen", self.layout.listen, ids, logits=False)
        self.listen_ids += ids
        self.listen_text += self.prompts.decode(ids)
        self.heard_pieces += 1
        return [*window, LlmStep(t=self.clock.now(), state="listen_insert", ms=_ms(t0), batch=1,
                                 step=self.steps, turn=self.turn)]

    def end_of_turn(self) -> list[Event]:
        """The user finished: the writer may speak once the control question says yes."""
        events = self._mark_turn_end() if not self.user_done else []
        self.user_done, self.thinker_paused, self.reread_due = True, False, False
        events += self._check_draft()  # every word heard: any re-read still due is this one
        if self.draft_ended:  # it ended on every word the user said: so would think mode
            self.draft_ended, self.thinking_done, self.think_pending = False, True, None
            self._split_changed()
        self.control_due = len(self.thoughts.ids) > 0  # ask at once if there is something
        self.writer_wait = 0
        return events

    def _mark_turn_end(self) -> list[Event]:
        """With ``mark_turn_end``: the note goes into the listen block after the words."""
        if not self.config.mark_turn_end or self.arena.length["listen"] == 0:
            return []
        events = self._insert_listen(self.prompts.turn_end_ids)
        self.turn_end_noted = True
        self._split_changed()
        return events

    def _unmark_turn_end(self) -> None:
        """The user goes on after all: the note that says they finished leaves the listen
        block (it is its last tokens until the next words), so their next words follow
        the earlier ones as they were said, and may revise them. The thoughts written
        since were written to a finished question: the draft is re-read without the note
        (``check_listen_thoughts`` keeps what the thinker would still write)."""
        if not self.turn_end_noted:
            return
        self.turn_end_noted = False
        note = self.prompts.turn_end_ids
        if self.listen_ids[-len(note):] != note or self.arena.length["listen"] < len(note):
            return  # (a window cut into it: what is left stays)
        keep = self.arena.length["listen"] - len(note)
        self.arena.truncate("listen", keep)
        self.listen_ids = self.listen_ids[:-len(note)]
        self.listen_text = self.prompts.decode(self.listen_ids)
        self.heard_pieces += 1  # what the thoughts were read with changed
        self._mark_reread(force=True)  # (the caller, ``interrupt``, marks the split changed)

    def interrupt(self, heard_tokens: int) -> list[Event]:
        """Barge-in: keep the first ``heard_tokens`` answer tokens, reopen the turn.

        The thinker keeps its thoughts (the turn-end note leaves the words: the user
        speaks again); new ``listen`` text may follow, and a later ``end_of_turn`` lets
        the writer go on after the heard part.
        """
        n = max(0, min(int(heard_tokens), len(self.answer.ids)))
        kept = self.answer.ids[:n]
        self.answer = TextStream(self.prompts.tok)
        self.answer_token_texts = [self.answer.push(i) for i in kept]
        self._rewind("answer", kept)
        if self.thinking_done:  # thinking may resume with the new words
            self.thinking_done = False
            self._rewind("thoughts", self.thoughts.ids)
        self.user_done = self.writer_on = self.finished = False
        self._unmark_turn_end()
        self._split_changed()
        return []

    def reset(self) -> None:
        """Forget everything; the next command starts a fresh turn."""
        self.arena.reset()
        self._new_turn_state()
        self._started = False

    # ------------------------------------------------------------ state

    @property
    def state(self) -> str:
        if self.finished:
            return DONE
        if not self.user_done:
            return LISTENING
        if self.thinking_done:
            return WRITING
        return BOTH if self.writer_on else THINKING

    @property
    def idle(self) -> bool:
        """Nothing useful to do until a command arrives."""
        return not self.reread_due and self._next_action() is None

    # ------------------------------------------------------------ the step

    def step(self) -> list[Event]:
        """Run at most one forward pass (or a draft's re-read); [] when idle."""
        if self.reread_due:
            checked = self._reread_draft()
            if checked:
                return checked
        action = self._next_action()
        if action is None:
            return []
        if action == "think_open":
            return self._open_thoughts()
        if action == "control":
            return self._ask_control()
        if action == "split":
            return self._open_writer()
        return self._decode()

    def run(self, question: str, history: Sequence[dict] = (), system: str | None = None,
            max_steps: int = 10_000) -> Iterator[Event]:
        """No-audio convenience: the whole question at once, then steps until done."""
        yield from self.begin_turn(history, system)
        yield from self.listen(question)
        yield from self.end_of_turn()
        for _ in range(max_steps):
            if self.done or self.idle:
                break
            yield from self.step()

    def _thinker_active(self) -> bool:
        if self.thinking_done or self.thinker_paused or self.arena.length["listen"] == 0:
            return False
        return self.user_done or self.thoughts_while_listening < self.config.max_listen_thoughts

    def _writer_active(self) -> bool:
        return self.user_done and not self.finished and (self.thinking_done or self.writer_on)

    def _next_action(self) -> str | None:
        if not self._started or self.finished:
            return None
        wait = self.config.max_writer_wait
        if (wait is not None and self.user_done and not self._writer_active()
                and self.writer_wait >= wait):
            self._release_writer()
        thinker = self._thinker_active()
        if thinker and self.think_pending is None:
            return "think_open"
        every = self.config.control_every
        if (every > 0 and self.user_done and not self.thinking_done and len(self.thoughts.ids) > 0
                and (self.control_due or self.since_control >= every)):
            return "control"
        if self._writer_active() and (self.split_stale or self.write_pending is None):
            return "split"
        return "decode" if thinker or self._writer_active() else None

    # ------------------------------------------------------------ forward passes

    def _prefill(self, block: str, view: tuple[str, ...], ids: list[int], *, logits: bool,
                 keep: int | None = None) -> tuple[torch.Tensor | None, LlmStep]:
        t0 = time.perf_counter()
        plan = make_plan(self.arena, [view], len(ids), self.rope)
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        try:
            with torch.inference_mode():
                out = forward_step(self.model, self.cache, x, plan, logits=logits, keep=keep)
        except BaseException:
            self.arena.truncate(block, plan.writes[0][1])
            raise
        return out, LlmStep(t=self.clock.now(), state=f"prefill:{block}", ms=_ms(t0), batch=1,
                            step=self.steps, turn=self.turn)

    def _open_thoughts(self) -> list[Event]:
        self.arena.clear("think_open")
        self.draft_read, self.draft_size = self.heard_pieces, 0  # thoughts start from every word heard
        logits, ev = self._prefill("think_open", self.layout.think_open, self.think_open_ids, logits=True)
        tok = self._pick([logits[0]], ["thinker"])[0]
        return [ev, *self._accept_thought(tok)]

    def _check_draft(self) -> list[Event]:
        """``check_listen_thoughts``: re-read the thoughts with the words heard so far and
        keep what the thinker would write again; its next choice continues them.

        Speculative decoding with the old draft as the guess: the think opening is read,
        then the draft (a short first read, then the rest), and each read keeps the tokens
        the thinker chooses itself. Where it chooses another token, up to ``draft_repairs``
        times the check guesses where the draft resumes after it (``core/draft.py``) and
        reads on from there; otherwise the rest goes. Every kept token is the thinker's own
        greedy choice given the new words, and its K/V was written with them. Thoughts a
        full window cut at the front cannot be re-read: kept as they are.
        """
        if not self.config.check_listen_thoughts or self.thinking_done:
            return []
        draft = list(self.thoughts.ids)
        if not draft:  # nothing to re-read: the thinker opens again on every word heard
            self.draft_ended = False
            return []
        if self.thoughts_dropped or self.draft_read == self.heard_pieces:
            return []  # (the last case: no words came since the draft was last read)
        t0 = time.perf_counter()
        self.arena.clear("think_open")
        self.arena.clear("thoughts")
        first, _ = self._prefill("think_open", self.layout.think_open, self.think_open_ids, logits=True)
        nxt = self._pick([first[0]], ["thinker"])[0]
        kept: list[int] = []
        resume, repairs, repaired, misses = 1, 0, False, 0
        read = _FIRST_READ  # the next read's length when the guess is long
        if nxt != draft[0]:
            # In spoken runs about a third of the checks chose another first thought; a
            # full read of such a draft cost as much as several decode steps, so without
            # repairs it goes unread.
            if self.config.draft_repairs <= 0:
                resume = len(draft)
            else:
                resume, repairs, repaired, read = resume_at(draft, 0, nxt, False), 1, True, _REPAIR_READ
        while resume < len(draft) and len(kept) < len(draft):
            guess = [nxt, *draft[resume:]][:len(draft) - len(kept)]
            if len(guess) > 2 * read:  # a long guess is read in full once its start holds
                guess = guess[:read]
            logits, _ = self._prefill("thoughts", self.layout.thinker, guess, logits=True,
                                      keep=len(guess))
            choices = self._pick(list(logits[0]), ["thinker"] * len(guess))
            took = next((i for i in range(1, len(guess)) if guess[i] != choices[i - 1]), len(guess))
            kept += guess[:took]
            self.arena.truncate("thoughts", len(kept))  # the K/V of the kept tokens only
            nxt, pos = choices[took - 1], resume + took - 1
            if repaired:  # a guess that held for a few tokens was worth it
                misses = misses + 1 if took < _REPAIR_HELD else 0
            after_repair, repaired, read = repaired and took == 1, False, len(draft)
            if pos >= len(draft) or nxt == draft[pos]:
                resume = pos + 1
            elif repairs < self.config.draft_repairs and misses < 2:
                # (two guesses in a row that failed at once: the new words changed the
                # thoughts, not a word of them)
                resume, repairs, repaired, read = (resume_at(draft, pos, nxt, after_repair),
                                                   repairs + 1, True, _REPAIR_READ)
            else:
                break
        self.thoughts = TextStream(self.prompts.tok)
        for tok in kept:
            self.thoughts.push(tok)
        self.think_pending, self.thoughts_while_listening = None, len(kept)
        self.draft_read, self.draft_size = self.heard_pieces, len(kept)
        self.draft_ended = False  # the re-read decides anew whether the thoughts end here
        if kept != draft[:len(kept)] or len(kept) < len(draft):
            self._split_changed()
        check = LlmDraftCheck(t=self.clock.now(), kept=len(kept), dropped=len(draft) - len(kept),
                              repairs=repairs, text=self.thoughts.text, ms=_ms(t0),
                              step=self.steps, turn=self.turn)
        return [check, *self._accept_thought(nxt)]

    def _open_writer(self) -> list[Event]:
        text = (self.prompts.template.think_close if self.thinking_done
                else self.prompts.template.writer_split)
        self.arena.clear("writer_split")
        need = self.write_pending is None
        logits, ev = self._prefill("writer_split", self.layout.writer_split, self.prompts.ids(text),
                                   logits=need)
        self.split_stale = False
        if not need:
            return [ev]
        return [ev, *self._accept_answer(self._pick([logits[0]], ["writer"])[0])]

    def _ask_control(self) -> list[Event]:
        t0 = time.perf_counter()
        logits, _ = self._prefill("question", self.layout.control, self.question_ids, logits=True)
        self.arena.clear("question")
        p_yes, p_no, yes = control_decision(logits[0], self.prompts.yes_ids, self.prompts.no_ids)
        yes = yes and p_yes >= self.config.control_min_yes
        if yes:
            self._release_writer()
        else:
            self.writer_on = False
        self.control_due, self.since_control = False, 0
        return [LlmControl(t=self.clock.now(), p_yes=p_yes, p_no=p_no, decision=yes, ms=_ms(t0),
                           step=self.steps, turn=self.turn)]

    def _release_writer(self) -> None:
        """Let the writer write one more paragraph, with a split that sees the newest thoughts."""
        if not self.writer_on and self.config.refresh_writer_split:
            self.split_stale = True
        self.writer_on, self.writer_wait = True, 0

    def _decode(self) -> list[Event]:
        window = self._make_room("thoughts", 1) if self._thinker_active() else []
        t0, state = time.perf_counter(), self.state
        rows, views, ids = [], [], []
        if self._thinker_active():
            rows.append("thinker"); views.append(self.layout.thinker); ids.append(self.think_pending)
        if self._writer_active():
            rows.append("writer"); views.append(self.layout.writer); ids.append(self.write_pending)
        logits = None
        if self.compiled is not None:  # it undoes its reservations on an error itself
            try:
                logits = self.compiled.step(views, ids)
            except VoiceAgentError:
                raise
            except Exception as e:
                self._compile_failed(e)
        if logits is None:
            plan = make_plan(self.arena, views, 1, self.rope)
            x = torch.tensor([[i] for i in ids], dtype=torch.long, device=self.device)
            try:
                with torch.inference_mode():
                    logits = forward_step(self.model, self.cache, x, plan)
            except BaseException:
                for block, start in plan.writes:
                    self.arena.truncate(block, start)
                raise
        toks = self._pick(list(logits), rows)
        self.steps += 1
        self.since_control += 1
        if self.user_done and "writer" not in rows:
            self.writer_wait += 1
        events: list[Event] = [*window, LlmStep(t=self.clock.now(), state=state, ms=_ms(t0),
                                                batch=len(rows), step=self.steps, turn=self.turn)]
        for row, tok in zip(rows, toks):
            events += self._accept_thought(tok) if row == "thinker" else self._accept_answer(tok)
        return events

    def _pick(self, logits: list[torch.Tensor], rows: list[str]) -> list[int]:
        # A draft to be checked may end while the user speaks (it pauses); otherwise the
        # thinker may not end its thoughts before the turn ends.
        free = self.user_done or self.config.check_listen_thoughts
        keys = [("thinker" if free else "thinker_listening") if r == "thinker" else "writer"
                for r in rows]
        bias = torch.stack([self.bias[k] for k in keys])
        return pick_tokens(torch.stack(logits), bias, self.config.sampling, self.generator)

    # ------------------------------------------------------------ token bookkeeping

    def _accept_thought(self, tok: int) -> list[Event]:
        if tok == self.prompts.end_of_think_id and not self.user_done:
            # Only a draft checked later may end while the user speaks: it waits for the
            # next words (the check re-reads it; nothing is pending until then).
            self.thinker_paused, self.think_pending, self.draft_ended = True, None, True
            return []
        if tok == self.prompts.end_of_think_id:
            self.thinking_done, self.think_pending = True, None
            self._split_changed()
            return []
        tail = self.thoughts.text
        piece = self.thoughts.push(tok)
        self.think_pending = tok
        if not self.user_done:
            self.thoughts_while_listening += 1
        event = LlmThink(t=self.clock.now(), token=tok, text=piece, step=self.steps, turn=self.turn)
        if len(self.thoughts.ids) + self.thoughts_dropped >= self.config.max_thoughts:
            # The budget ends the thoughts here. The writer reads every thought, as think
            # mode's answer does, so the last one is fed now (before, its K/V was never
            # written and the writer missed it).
            fed = [*self._make_room("thoughts", 1),
                   self._prefill("thoughts", self.layout.thinker, [tok], logits=False)[1]]
            self.thinking_done, self.think_pending = True, None
            self._split_changed()
            return [event, *fed]
        if ends_paragraph(tail, piece):
            self.control_due = True
            if not self.user_done:
                self.thinker_paused = True  # wait for new words instead of running away
        return [event]

    def _accept_answer(self, tok: int) -> list[Event]:
        if tok in self.writer_stop or len(self.answer.ids) >= self.config.max_answer:
            self.finished, self.write_pending = True, None
            return []
        tail = self.answer.text
        piece = self.answer.push(tok)
        self.answer_token_texts.append(piece)
        self.write_pending = tok
        event = LlmWrite(t=self.clock.now(), token=tok, text=piece, step=self.steps, turn=self.turn)
        if ends_paragraph(tail, piece):
            if _repeats_a_paragraph(self.answer.text):
                # A writer that says a paragraph it already said is looping (small models
                # do, paragraph after paragraph): the answer is over.
                self.finished, self.write_pending = True, None
            elif not self.thinking_done:
                self.writer_on = False  # each "yes" buys at most one paragraph
        return [event]

    def _make_room(self, block: str, need: int) -> list[Event]:
        """Window ``block`` (listen or thoughts) so ``need`` more tokens fit (core/window.py)."""
        k = tokens_to_drop(self.arena, block, need)
        if not k:
            return []
        drop_front(self.arena, self.rope, block, k)
        if block == "listen":
            self.listen_settled = True  # its front is gone: a revision cannot line up
        if block == "thoughts":
            self.thoughts.drop_front(k)
            self.thoughts_dropped += k
        self._split_changed()  # the writer's split was computed over the old thoughts
        return [LlmWindow(t=self.clock.now(), block=block, dropped=k,
                          kept=self.arena.length[block], turn=self.turn)]

    def _split_changed(self) -> None:
        # The split text or its context changed: re-encode it before the writer's next token.
        self.split_stale = self.split_stale or self.config.refresh_writer_split

    def _rewind(self, block: str, kept: list[int]) -> None:
        """Make the last kept token pending again (its logits were not kept)."""
        self.arena.truncate(block, min(self.arena.length[block], max(0, len(kept) - 1)))
        pending = kept[-1] if kept else None
        if block == "answer":
            self.write_pending = pending
        else:
            self.think_pending = pending

    def _new_turn_state(self) -> None:
        self.listen_text = ""
        self.listen_ids: list[int] = []  # the listen block's tokens
        self.listen_settled = False  # a window cut the block's front: ``revise`` cannot line up
        self.turn_end_noted = False  # the turn-end note follows the words (``mark_turn_end``)
        self.thoughts = TextStream(self.prompts.tok)
        self.answer = TextStream(self.prompts.tok)
        self.answer_token_texts: list[str] = []
        self.think_pending: int | None = None
        self.write_pending: int | None = None
        self.user_done = self.thinking_done = self.writer_on = self.finished = False
        self.thinker_paused = self.control_due = False
        self.split_stale = True
        self.thoughts_while_listening = 0
        self.heard_pieces = 0  # listen insertions this turn (words, the turn-end note)
        self.draft_read = -1   # heard_pieces when the thoughts were last (re)read from the start
        self.draft_size = 0    # thought tokens then
        self.draft_ended = False  # the draft chose to end its thoughts while the user spoke
        self.reread_due = False  # new words came: re-read the draft before the next step
        self.thoughts_dropped = 0  # thought tokens a full window let go (budgets count them)
        self.since_control = 0
        self.writer_wait = 0  # decode steps the writer sat idle since the user's turn ended


def _repeats_a_paragraph(text: str) -> bool:
    """Is the last paragraph of ``text`` (ending now) the same as an earlier one?"""
    paras = [" ".join(p.split()).lower() for p in text.split("\n\n")]
    paras = [p for p in paras if p]
    return len(paras) >= 2 and paras[-1] in paras[:-1]


# Tokens of a draft read first, before the rest: a draft the new words changed early is
# dropped (or repaired) after a read of this many, not of all of it. After a repair the
# guess is tried on fewer first, and it "held" when this many of them were kept.
_FIRST_READ = 12
_REPAIR_READ = 6
_REPAIR_HELD = 3


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)
