"""Answers at scale on the real clock: N concurrent sessions in one trio process.

    voicestream bench --real [--sessions 100,300,1000] [--speech-s 15]

Each session is a real :class:`voicestream.runner.Answer` at the shipped settings:

- a model that sends its first token after 0.4 s, then 80 tokens a second of the
  demo answer (1-6 characters each), delivered as an event loop delivers a
  network's data: one poll every 50 ms wakes every session whose deltas arrived
  since (one ticker task for all, as one epoll call returns all ready sockets);
- the silent engine;
- a sink that plays in real time: a 0.2 s device buffer, each block copied into a
  one-second ring (what the speaker sink does); an *underrun* is a block that
  arrived after the device had played everything it had, after first audio.

Sessions start evenly over 2 s; each listener stops after ``--speech-s`` seconds of
speech. Every N runs in a fresh process, so its memory starts clean. Reported:
RSS growth (peak resident memory during the run minus before the sessions),
CPU seconds, underruns, first audio p50/p99 (from each session's start), and the
most audio held at once (seconds in the pipeline, from its statistics).
``--written-audio`` makes the engine write its samples (a voice does; the silent
engine's zeros stay unmapped pages until something copies them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import trio

from .audio import Audio
from .config import Config
from .runner import Answer
from .sinks import ClockedSink
from .sources import BaseSource
from .sources.demo import demo_answer, tokens
from .synthesizers.silent import SilentSynthesizer

RATE = 22050
TOKENS_PER_S = 80
READ_EVERY_S = 0.05
FIRST_TOKEN_S = 0.4
START_SPREAD_S = 2.0
DEVICE_BUFFER_S = 0.2


ANSWERS = [list(tokens(demo_answer(), random.Random(seed))) for seed in range(10)]


class Network:
    """Every READ_EVERY_S, wakes the models whose next deltas have arrived."""

    def __init__(self) -> None:
        self.waiting: list[tuple[float, trio.Event]] = []

    async def arrival(self, at: float) -> None:
        if trio.current_time() < at:
            event = trio.Event()
            self.waiting.append((at, event))
            await event.wait()

    async def run(self) -> None:
        while True:
            await trio.sleep(READ_EVERY_S)
            now = trio.current_time()
            due = [event for at, event in self.waiting if at <= now]
            self.waiting = [(at, event) for at, event in self.waiting if at > now]
            for event in due:
                event.set()


class PacedModel(BaseSource):
    """The demo answer at a model's pace, in network reads."""

    def __init__(self, seed: int, network: Network) -> None:
        super().__init__()
        self.pieces = ANSWERS[seed % len(ANSWERS)]
        self.network = network

    async def stream(self) -> AsyncGenerator[str]:
        start = trio.current_time() + FIRST_TOKEN_S
        sent = 0
        while sent < len(self.pieces):
            await self.network.arrival(start + sent / TOKENS_PER_S)
            due = min(len(self.pieces), int((trio.current_time() - start) * TOKENS_PER_S) + 1)
            for piece in self.pieces[sent:due]:
                yield piece
            sent = max(due, sent + 1)


class RealtimeSink(ClockedSink):
    """Plays in real time: a small device buffer fed from a one-second ring."""

    lead_s = DEVICE_BUFFER_S

    def __init__(self) -> None:
        self.ring = np.zeros(RATE, dtype=np.int16)
        self.ring.fill(1)  # resident, as a device's buffer is
        self.at = 0
        self.started = trio.Event()

    async def write(self, audio: Audio) -> None:
        self.started.set()
        samples = audio.samples[: len(self.ring)]
        end = self.at + len(samples)
        head = min(end, len(self.ring)) - self.at
        self.ring[self.at : self.at + head] = samples[:head]
        self.ring[: len(samples) - head] = samples[head:]
        self.at = end % len(self.ring)
        await self.play(audio.seconds)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Scale:
    sessions: int
    rss_growth_mb: float
    cpu_s: float
    wall_s: float
    tokens: int
    underruns: int
    underrun_s: float
    ttfa_p50_s: float
    ttfa_p99_s: float
    audio_held_peak_s: float
    failed: int


class WrittenSilence(SilentSynthesizer):
    """The silent engine, its samples written to memory as a voice's would be."""

    async def synthesize(self, text: str) -> Audio:
        audio = await super().synthesize(text)
        return replace(audio, samples=np.ones(len(audio.samples), dtype=np.int16))


async def run_sessions(count: int, speech_s: float, written: bool = False) -> Scale:
    config = Config()
    engine = WrittenSilence if written else SilentSynthesizer
    network = Network()
    answers: list[Answer] = []
    sinks: list[RealtimeSink] = []
    peak = {"rss": rss_bytes(), "audio_s": 0.0}
    before = peak["rss"]
    cpu, wall = time.process_time(), time.perf_counter()

    async def session(i: int) -> None:
        await trio.sleep(START_SPREAD_S * i / count)
        sink = RealtimeSink()
        answer = Answer(PacedModel(i, network), engine(), sink, config)
        answers.append(answer)
        sinks.append(sink)
        async with trio.open_nursery() as nursery:

            async def listener() -> None:
                await sink.started.wait()
                await trio.sleep(speech_s)
                answer.stop()

            nursery.start_soon(listener)
            await answer.run()
            nursery.cancel_scope.cancel()

    async def sample() -> None:
        while True:
            peak["rss"] = max(peak["rss"], rss_bytes())
            held = 0.0
            for answer, sink in zip(answers, sinks, strict=True):
                stats = answer.statistics()
                if "audio" in stats.channels:
                    held += stats.channels["audio"].size + stats.synthesizing_s
                held += sink.held_s()
            peak["audio_s"] = max(peak["audio_s"], held)
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        nursery.start_soon(network.run)
        async with trio.open_nursery() as sessions:
            for i in range(count):
                sessions.start_soon(session, i)
        nursery.cancel_scope.cancel()
    ttfas = sorted(a.metrics.ttfa_s for a in answers if a.metrics.ttfa_s is not None)
    return Scale(
        count,
        (peak["rss"] - before) / 2**20,
        time.process_time() - cpu,
        time.perf_counter() - wall,
        sum(a.metrics.tokens for a in answers),
        sum(s.underruns for s in sinks),
        sum(s.underrun_s for s in sinks),
        statistics.median(ttfas),
        ttfas[min(len(ttfas) - 1, round(0.99 * (len(ttfas) - 1)))],
        peak["audio_s"],
        count - len(ttfas),
    )


def run_in_fresh_process(count: int, speech_s: float, written: bool) -> Scale:
    out = subprocess.run(
        [sys.executable, "-m", "voicestream.bench_real", "--one", str(count), "--speech-s",
         str(speech_s)] + (["--written-audio"] if written else []),
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return Scale(**json.loads(out.stdout))


def table(rows: list[Scale]) -> str:
    lines = [
        "| sessions | RSS growth | per session | CPU | tokens per CPU-second | underruns "
        "after first audio | first audio p50 / p99 | audio held at peak |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.sessions:,} | {r.rss_growth_mb:.0f} MB | "
            f"{r.rss_growth_mb * 1024 / r.sessions:.0f} KB | {r.cpu_s:.1f} s of "
            f"{r.wall_s:.0f} s | {r.tokens / r.cpu_s:,.0f} | {r.underruns} "
            f"({r.underrun_s:.1f} s) | {r.ttfa_p50_s:.2f} / {r.ttfa_p99_s:.2f} s | "
            f"{r.audio_held_peak_s:,.0f} s ({r.audio_held_peak_s * RATE * 2 / 2**20:.0f} MB) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Concurrent answers on the real clock.")
    parser.add_argument("--sessions", default="100,300,1000", help="comma-separated counts")
    parser.add_argument("--speech-s", type=float, default=15.0, help="each listener stops then")
    parser.add_argument(
        "--written-audio", action="store_true", help="samples written, as a voice's are"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        scale = trio.run(run_sessions, args.one, args.speech_s, args.written_audio)
        print(json.dumps(asdict(scale)))
        return 0
    rows = []
    for count in (int(n) for n in args.sessions.split(",")):
        rows.append(run_in_fresh_process(count, args.speech_s, args.written_audio))
        print(f"{count} sessions done", file=sys.stderr)
    engine = "silent engine, samples written" if args.written_audio else "silent engine"
    print(
        f"{TOKENS_PER_S} tokens/s per session, delivered every {READ_EVERY_S * 1000:.0f} ms; "
        f"{engine}; real-time sinks; each listener stops after {args.speech_s:g} s "
        f"of speech; {os.cpu_count()} cores.\n"
    )
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([figures(r) for r in rows], indent=2) + "\n")
    return 0


def figures(r: Scale) -> dict[str, float | int]:
    """One row as ``--json`` writes it."""
    return {
        "sessions": r.sessions,
        "rss_growth_mb": round(r.rss_growth_mb, 1),
        "underruns": r.underruns,
        "underrun_s": round(r.underrun_s, 2),
        "first_audio_p50_s": round(r.ttfa_p50_s, 3),
        "first_audio_p99_s": round(r.ttfa_p99_s, 3),
        "cpu_s": round(r.cpu_s, 2),
    }


if __name__ == "__main__":
    sys.exit(main())
