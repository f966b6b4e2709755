"""The offline demo: a bundled answer streamed with a model's timing.

About ``first_token_s`` to the first token, then ``tokens_per_s`` on average
with jitter (each gap uniform in 0.5-1.5 times the mean), tokens of 1-6
characters. Seeded, so a run can be repeated exactly.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncGenerator, Iterator
from importlib import resources

import trio

from ..config import DemoConfig
from . import BaseSource


def demo_answer() -> str:
    return resources.files("voicestream").joinpath("data/demo_answer.txt").read_text("utf-8")


@functools.cache
def _demo_chat_answers() -> tuple[str, ...]:
    more = resources.files("voicestream").joinpath("data/demo_chat.txt").read_text("utf-8")
    return tuple(a.strip() for a in (demo_answer(), *more.split("\n===\n")))


def demo_chat_answer(turn: int) -> str:
    """The bundled answer for the ``turn``-th question of an offline demo chat."""
    answers = _demo_chat_answers()
    return answers[turn % len(answers)]


def tokens(text: str, rng: random.Random) -> Iterator[str]:
    """Cut ``text`` into pieces of 1-6 characters, as a model's tokens come."""
    i = 0
    while i < len(text):
        n = rng.randint(1, 6)
        yield text[i : i + n]
        i += n


class DemoSource(BaseSource):
    def __init__(self, config: DemoConfig, text: str | None = None, resume_from: str = "") -> None:
        super().__init__()
        self.config = config
        self.text = demo_answer() if text is None else text
        if resume_from and self.text.startswith(resume_from):
            self.text = self.text[len(resume_from) :]  # the rest, as a resumed model writes it

    async def stream(self) -> AsyncGenerator[str]:
        seed = self.config.seed if self.config.seed >= 0 else None
        rng = random.Random(seed)
        mean_gap = 1.0 / self.config.tokens_per_s
        await trio.sleep(self.config.first_token_s)
        for token in tokens(self.text, rng):
            yield token
            await trio.sleep(mean_gap * rng.uniform(0.5, 1.5))
