"""Pacing a slow engine, in virtual time (not a test: it gates nothing).

    .venv/bin/python benchmarks/pacing.py [--seeds N]

Real answers (``runner.Answer`` at the shipped settings) with a simulated engine
that takes ``rtf`` seconds of work per second of the audio it makes (lognormal
jitter, sigma 0.25: what was measured of Piper here) and a listener that plays in
real time through a one-second buffer, as the speaker does; the model writes at
60 tokens/s after 0.4 s. Two tables, seeds 1-N each, mean (worst):

- the demo answer at real-time factors 0.1-0.5, paced (as shipped) against whole
  chunks (``chunker.pace = false``): underruns after first audio, the longest,
  ``ttfa_s - ttft_s`` and the head start;
- the first fragment: answers that open with a long sentence, at real-time factors
  0.08 (Piper on an idle machine) and 0.3, with ``first_fragment_max_words`` 12
  (before) and 8 (shipped): ``ttfa_s - ttft_s`` and underruns.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics

import numpy as np
import trio
import trio.testing

from voicestream.audio import Audio
from voicestream.config import Config, DemoConfig
from voicestream.runner import Answer
from voicestream.sinks import ClockedSink
from voicestream.sources.demo import DemoSource, demo_answer
from voicestream.synthesizers.silent import spoken_seconds
from voicestream.words import estimate

RATE = 22050
OPENINGS = [
    "The sky looks blue because sunlight is scattered by the gases in the air, and blue "
    "light is scattered the most. That is called Rayleigh scattering.",
    "Paris is the capital of France and its largest city, with about two million people in "
    "the city proper. It has been the capital for most of the last thousand years.",
    "To boil an egg, put it in a pot of cold water, bring the water to a boil, and then let it "
    "simmer for about nine minutes. Cool it in cold water before you peel it.",
    "In short, a black hole is a region of space where gravity is so strong that nothing, not "
    "even light, can escape from it once it crosses the event horizon.",
    "Python lists are ordered and mutable which means you can change them after they are made. "
    "Tuples are ordered too, but they cannot be changed.",
    demo_answer(),
]


class Engine:
    sample_rate = RATE

    def __init__(self, rtf: float, seed: int) -> None:
        self.rtf, self.rng = rtf, random.Random(seed)

    async def synthesize(self, text: str) -> Audio:
        seconds = spoken_seconds(text, 180)
        await trio.sleep(seconds * self.rtf * self.rng.lognormvariate(0, 0.25))
        frames = round(seconds * RATE)
        return Audio(np.zeros(frames, dtype=np.int16), RATE, text, tuple(estimate(text, frames)))


class Listener(ClockedSink):
    lead_s = 1.0  # the speaker's ring

    async def write(self, audio: Audio) -> None:
        await self.play(audio.seconds)


def run(text: str, rtf: float, seed: int, **chunker: object) -> tuple[float, int, float, float]:
    """``(ttfa_s - ttft_s, underruns, underrun_s, head_start_s)`` of one answer."""
    config = Config()
    config = dataclasses.replace(config, chunker=dataclasses.replace(config.chunker, **chunker))

    async def main() -> tuple[float, int, float, float]:
        listener = Listener()
        source = DemoSource(DemoConfig(first_token_s=0.4, tokens_per_s=60, seed=seed), text)
        result = await Answer(source, Engine(rtf, seed), listener, config).run()
        m = result.metrics
        assert m.ttfa_s is not None and m.ttft_s is not None
        return m.ttfa_s - m.ttft_s, listener.underruns, listener.underrun_s, m.head_start_s

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def cells(results: list[tuple[float, int, float, float]]) -> str:
    gap, underruns, silence, head = zip(*results, strict=True)
    return (
        f"{statistics.fmean(underruns):.1f} ({max(underruns)}) | {max(silence):.2f} s | "
        f"{statistics.fmean(gap):.2f} s ({max(gap):.2f}) | {statistics.fmean(head):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    seeds = range(1, parser.parse_args().seeds + 1)
    print(f"The demo answer, seeds 1-{len(seeds)}, mean (worst)\n")
    print("| real-time factor | chunks | underruns | longest | ttfa_s - ttft_s | head start |")
    print("|---:|---|---:|---:|---:|---:|")
    for rtf in (0.1, 0.2, 0.3, 0.4, 0.5):
        for pace in (False, True):
            results = [run(demo_answer(), rtf, seed, pace=pace) for seed in seeds]
            name = "paced (shipped)" if pace else "whole"
            print(f"| {rtf} | {name} | {cells(results)} |")
    print(f"\nAnswers that open with a long sentence ({len(OPENINGS)}), seeds 1-{len(seeds)}\n")
    print("| real-time factor | first_fragment_max_words | underruns | longest | ttfa_s - ttft_s "
          "| head start |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for rtf in (0.08, 0.3):
        for words in (12, 8):
            results = [
                run(text, rtf, seed, first_fragment_max_words=words)
                for text in OPENINGS
                for seed in seeds
            ]
            print(f"| {rtf} | {words} | {cells(results)} |")


if __name__ == "__main__":
    main()
