"""Cost per token of the whole pipeline, in process, next to the chunker alone.

    .venv/bin/python benchmarks/throughput.py [--tokens N] [--runs N]

An in-memory source yields the demo answer, repeated, in pieces of 1-6
characters as fast as it can; the silent engine and the null sink cost next to
nothing, so what is measured is voicestream's own work per token: the source
task, two text channels, the chunker, the audio channel, the sink task (real
clock, one trio loop). The chunker alone runs on the same pieces.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import AsyncGenerator

import trio

from voicestream.chunker import SentenceChunker
from voicestream.config import Config
from voicestream.runner import Answer
from voicestream.sinks import NullSink
from voicestream.sources import BaseSource
from voicestream.sources.demo import demo_answer, tokens
from voicestream.synthesizers.silent import SilentSynthesizer


class Pieces(BaseSource):
    def __init__(self, pieces: list[str]) -> None:
        super().__init__()
        self.pieces = pieces

    async def stream(self) -> AsyncGenerator[str]:
        for piece in self.pieces:
            yield piece


def pieces(count: int, seed: int) -> list[str]:
    text = demo_answer() * (count // 500 + 2)
    return list(tokens(text, random.Random(seed)))[:count]


def pipeline_us(items: list[str]) -> float:
    async def run() -> None:
        answer = Answer(Pieces(items), SilentSynthesizer(), NullSink(), Config())
        result = await answer.run()
        assert result.outcome == "done", result.error

    start = time.perf_counter()
    trio.run(run)
    return (time.perf_counter() - start) / len(items) * 1e6


def chunker_us(items: list[str]) -> float:
    start = time.perf_counter()
    chunker = SentenceChunker()
    for item in items:
        chunker.feed(item)
    chunker.flush()
    return (time.perf_counter() - start) / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    whole, alone = [], []
    for seed in range(1, args.runs + 1):
        items = pieces(args.tokens, seed)
        whole.append(pipeline_us(items))
        alone.append(chunker_us(items))
    print(f"{args.tokens:,} tokens of 1-6 characters, {args.runs} runs\n")
    print("| | us per token: min | median | max |")
    print("|---|---:|---:|---:|")
    for name, runs, digits in (
        ("pipeline (source -> chunker -> silent engine -> null sink)", whole, 1),
        ("chunker alone", alone, 2),
    ):
        low, mid, high = min(runs), statistics.median(runs), max(runs)
        print(f"| {name} | {low:.{digits}f} | {mid:.{digits}f} | {high:.{digits}f} |")


if __name__ == "__main__":
    main()
