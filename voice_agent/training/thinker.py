"""Generated tasks → token rows in the exact layout the core reads, and the model the
FlyThinker training loop drives for them.

Three kinds of row, all starting with the prompt the session builds (system text, the
user's words as plain text, the think opening of ``Prompts``):

- ``think``: the think baseline's transcript. The thoughts, then the think closing, the
  answer and the end-of-turn token. The baseline ends thoughts when the model *writes* the
  end-of-turn token and then *feeds* the closing text instead, so the label at the closing's
  first position is the end-of-turn id while the input there is the closing itself.
- ``writer``: the async writer's view. Thoughts cut anywhere after they hold the answer,
  the writer split (``[thoughts continue]`` plus the closing, or the closing alone when the
  thoughts are whole), then the answer. Only the answer is learned.
- ``control``: the control view. Partial thoughts, the (still empty) answer, the control
  question, and "yes" when the thoughts already hold the answer, else "no".
- ``listen``: thinking while listening. The question cut after one of the pieces a
  recogniser commits, and the thoughts written so far in paragraphs, one per piece
  (``tasks.rounds``): the steps each piece made possible, or "Still listening." when it
  made none, each ending in a blank line (the engine pauses the thinker there until new
  words come). No turn-end note (``layout.TURN_END_NOTE``) yet, so nothing that needs the whole question (the
  conclusion, a walk's comparisons) is written. Every other row's turn has ended: the note
  follows the words, as the engine puts it there with ``mark_turn_end``.

Listen rows, the note and the listening paragraphs come only with ``listening=True``
(``train-thinker --listening``); there half of the think, writer and control rows also
carry listening paragraphs before the rest of the thoughts, as a live session's thoughts
do when the user's turn ends. Without it the rows are exactly those of the shipped v2.

The loss is a mean per row, then over the batch, so a one-token control row weighs as much
as a long transcript.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from voice_agent.core.flythinker.fusion import base_decoder
from voice_agent.core.layout import Prompts
from voice_agent.core.untrusted import encode_untrusted
from voice_agent.training.tasks import Rounds, Task, rounds, split_pieces

ROW_KINDS = ("think", "writer", "control", "listen")
MIX = {"think": 0.6, "writer": 0.15, "control": 0.25}  # whole questions (the shipped v2)
LISTENING_MIX = {"think": 0.45, "writer": 0.12, "control": 0.23, "listen": 0.2}
HEARD_IN_PIECES = 0.5  # with listening: think/writer/control rows whose question came in pieces

Row = tuple[list[int], list[int]]


@dataclass(frozen=True)
class Encoded:
    kind: str
    ids: list[int]
    labels: list[int]
    label: str = ""  # control rows: "yes" | "no"


class ThinkerEncoder:
    """Task → rows through ``tokenizer``'s own chat template and the core's ``Prompts``."""

    def __init__(self, tokenizer, system: str | None, listening: bool = False) -> None:
        self.tok, self.system, self.listening = tokenizer, system, listening
        self.prompts = Prompts(tokenizer)
        t = self.prompts.template
        self.eot = self.prompts.end_of_turn_id
        self.end_think = self.prompts.end_of_think_id
        self.open_ids = self.prompts.ids(self.prompts.think_open_text())
        self.note_ids = self.prompts.turn_end_ids
        self.close_ids = self.prompts.ids(t.think_close)
        self.split_ids = self.prompts.ids(t.writer_split)
        self.question_ids = self.prompts.ids(t.question)
        self.yes_id = self.prompts.ids("yes")[0]
        self.no_id = self.prompts.ids("no")[0]

    def prefix(self, question: str | list[str], done: bool = True) -> list[int]:
        """Prompt + listen + think opening, as the engine's blocks hold them; a question
        in pieces is encoded piece by piece, as ``Engine.listen`` inserts them, and a turn
        that has ended carries ``TURN_END_NOTE`` (the engine's ``mark_turn_end``)."""
        pieces = [question] if isinstance(question, str) else question
        heard = [i for j, p in enumerate(pieces) for i in self.prompts.listen_ids(p, first=j == 0)]
        note = self.note_ids if done and self.listening else []
        return self.prompts.prompt_ids([], self.system) + heard + note + self.open_ids

    def text(self, s: str) -> list[int]:
        # Thoughts and answers are the model's own words, written here as plain text.
        return encode_untrusted(self.tok, s)

    def thought_ids(self, heard: Rounds, n_units: int | None = None) -> list[int]:
        """Paragraph by paragraph (``Rounds.paragraphs``): the tokens the thinker writes."""
        return [i for p in heard.paragraphs(n_units) for i in self.text(p)]

    def think(self, task: Task, heard: Rounds | None = None) -> Encoded:
        pre = self.prefix(task.question if heard is None else list(heard.pieces))
        th = self.text(task.thoughts) if heard is None else self.thought_ids(heard)
        ans = self.text(task.answer) + [self.eot]
        ids = pre + th + self.close_ids + ans
        labels = ([-100] * len(pre) + th + [self.end_think] + [-100] * (len(self.close_ids) - 1)
                  + ans)
        return Encoded("think", ids, labels)

    def _partial(self, task: Task, n_steps: int, heard: Rounds | None) -> tuple[list[int], list[int]]:
        if heard is None:
            return self.prefix(task.question), self.text(task.partial_thoughts(n_steps))
        return (self.prefix(list(heard.pieces)),
                self.thought_ids(heard, heard.units_for_steps(n_steps)))

    def writer(self, task: Task, n_steps: int, heard: Rounds | None = None) -> Encoded:
        pre, th = self._partial(task, n_steps, heard)
        split = self.close_ids if n_steps >= len(task.steps) else self.split_ids
        ans = self.text(task.answer) + [self.eot]
        ids = pre + th + split + ans
        return Encoded("writer", ids, [-100] * (len(ids) - len(ans)) + ans)

    def control(self, task: Task, n_steps: int, heard: Rounds | None = None) -> Encoded:
        yes = n_steps >= task.known_at
        pre, th = self._partial(task, n_steps, heard)
        ids = pre + th + self.question_ids + [self.yes_id if yes else self.no_id]
        return Encoded("control", ids, [-100] * (len(ids) - 1) + ids[-1:], "yes" if yes else "no")

    def listen(self, heard: Rounds, j: int) -> Encoded:
        """The thinker's view after piece ``j`` (0-based) was heard and thought about."""
        pre = self.prefix(list(heard.pieces[:j + 1]), done=False)
        th = self.thought_ids(heard, heard.paragraph_end[j])
        return Encoded("listen", pre + th, [-100] * len(pre) + th)

    def row(self, task: Task, rng: random.Random) -> Encoded:
        """One row of a kind drawn by ``MIX``; control labels come out balanced."""
        mix = LISTENING_MIX if self.listening else MIX
        kind = rng.choices(list(mix), list(mix.values()))[0]
        n = len(task.steps)
        heard = None
        # (without listening no extra draw: the seeded rows stay exactly those of v2)
        if self.listening and (kind == "listen" or rng.random() < HEARD_IN_PIECES):
            # A listen row always has a paragraph for its last piece (settle): after the
            # last piece it is the same as a row whose turn has not ended yet.
            heard = rounds(task, split_pieces(task.question, rng),
                           settle=kind == "listen" or rng.random() < 0.5)
        if kind == "listen":
            return self.listen(heard, rng.randrange(len(heard.paragraph_end)))
        if kind == "think":
            return self.think(task, heard)
        if kind == "writer":
            return self.writer(task, rng.randint(task.known_at, n), heard)
        if rng.random() < 0.5 or task.known_at <= 1:
            return self.control(task, rng.randint(task.known_at, n), heard)
        return self.control(task, rng.randint(1, task.known_at - 1), heard)

    def rows(self, tasks: list[Task], seed: int) -> list[Encoded]:
        rng = random.Random(seed)
        return [self.row(t, rng) for t in tasks]


@dataclass
class LmOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None


class ThinkerLM(nn.Module):
    """The causal LM behind the interface ``core.flythinker.train.Trainer`` drives
    (``generator`` is the member LoRA wraps; there is no reasoner).

    With labels, the LM head runs only at the labelled positions: most of a row is prompt
    or thoughts read as context, and a 49k-word head over every position costs about as
    much as the rest of the step on a CPU. ``logits`` is then None."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.generator, self.reasoner = model, None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> LmOutput:
        if labels is None:
            out = self.generator(input_ids=input_ids, attention_mask=attention_mask)
            return LmOutput(out.logits.float(), None)
        hidden = base_decoder(self.generator)(input_ids=input_ids,
                                              attention_mask=attention_mask).last_hidden_state
        y = labels[:, 1:]
        rows, cols = (y != -100).nonzero(as_tuple=True)                     # (N,), (N,)
        logits = self.generator.get_output_embeddings()(hidden[rows, cols]).float()  # (N, V)
        ce = nn.functional.cross_entropy(logits, y[rows, cols], reduction="none")
        return LmOutput(None, row_mean(ce, rows, labels.shape[0]))


def row_mean(ce: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Token losses averaged within each row, then over the rows that have any."""
    total = torch.zeros(n_rows, dtype=ce.dtype, device=ce.device).index_add(0, rows, ce)
    count = torch.bincount(rows, minlength=n_rows).to(ce.dtype)
    has = count > 0
    return (total[has] / count[has]).mean() if has.any() else ce.sum() * 0.0
