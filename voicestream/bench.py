"""Buffer policies compared: the real answer runner, simulated parts, virtual time.

    voicestream bench [--out DIR]      (or: .venv/bin/python benchmarks/buffers.py)

Each session is a real :class:`voicestream.runner.Answer` (the pipeline with its
channels and chunker, unchanged); around it, a simulated model, engine and
real-time sink, all in trio's virtual time (MockClock), seeded, so every run
gives the same numbers. What is held is read from the answer's public
statistics only.

- The model writes tokens into a network buffer of 300 tokens (what TCP gives) and
  can only go on writing while the pipeline reads; a *producer timeout* is a write
  that waited longer than the stall budget (2 s).
- The engine takes 1/50 of the audio's length to synthesize (plus stalls in the
  hiccup scenario) and produces silence as long as espeak would speak the text.
- The sink plays in real time with a 0.2 s device buffer; an *underrun* is a wait
  for audio after playback began and before the answer ended.
- Wasted, when the listener interrupts: tokens the model generated that were never
  spoken, and (in brackets) seconds of audio synthesized that were never played.
- Memory held in the pipeline: text in the channels (bytes), audio in the channels,
  in the synthesizer's hands and in the device buffer (22050 Hz 16-bit: 44,100
  bytes per second), sampled every 0.1 s (every second with 1,000 sessions).

Writes a markdown table to stdout, and buffers.json, occupancy.png and
memory_vs_wait.png to --out (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trio
import trio.testing

from .audio import Audio
from .channels import Adaptive, Fixed, Jitter, Unbounded, open_channel
from .config import BuffersConfig, Config
from .pipeline import Buffers
from .runner import Answer
from .sinks import BaseSink
from .sources import BaseSource
from .sources.demo import demo_answer
from .synthesizers.silent import spoken_seconds

STALL_BUDGET = 2.0
NETWORK_TOKENS = 300
AUDIO_BYTES_PER_S = 22050 * 2
SIM_RATE = 100  # the simulated audio's sample rate: tiny arrays, real durations
DEVICE_BUFFER_S = 0.2


def policies() -> dict[str, Buffers]:
    config = BuffersConfig()
    adaptive = Buffers(
        Adaptive(config.text_floor, config.text_hard_cap, STALL_BUDGET),
        Jitter(config.audio_floor_s, config.audio_cap_s),
        config.audio_block_s,
        STALL_BUDGET,
    )
    out = {f"Fixed({n})": Buffers(Fixed(n), Fixed(n), 0.5, STALL_BUDGET) for n in (4, 16, 64, 256)}
    out["Unbounded"] = Buffers(Unbounded(), Unbounded(), 0.5, STALL_BUDGET)
    out["Adaptive"] = adaptive
    return out


@dataclass(frozen=True)
class Scenario:
    name: str
    tokens: int
    rate: float  # tokens per second while writing
    bursts: tuple[int, int] | None = None  # tokens per burst, then a pause of 1-5 s
    stalls: float = 0.0  # chance that a synthesis stalls for 1-3 s
    stop_after_speech_s: float | None = None
    sessions: int = 1
    tokens_per_delta: int = 1


SCENARIOS = [
    Scenario("1 long answer", 4000, 80),
    Scenario("2 bursty model", 2000, 200, bursts=(100, 300)),
    Scenario("3 synthesis hiccups", 2000, 80, stalls=0.08),
    Scenario("4 slow model", 600, 8),
    Scenario("5 interruption", 4000, 80, stop_after_speech_s=5.0),
    Scenario("5b interruption after 10 s", 4000, 80, stop_after_speech_s=10.0),
    Scenario("6 1,000 sessions", 80, 80, sessions=1000, tokens_per_delta=4),
]


def token_texts(count: int, rng: random.Random) -> list[str]:
    text = demo_answer().replace("\n- ", "\n")
    out: list[str] = []
    i = 0
    while len(out) < count:
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i = (i + n) % len(text)
    return out


@dataclass
class Session(BaseSink):
    """One simulated answer: model, network, engine and sink around a real Answer."""

    scenario: Scenario
    rng: random.Random
    generated: int = 0
    producer_waits: list[float] = field(default_factory=list)
    played_chars: int = 0
    written_chars: int = 0
    underruns: int = 0
    underrun_s: float = 0.0
    device_until: float = 0.0
    unplayed_audio_s: float = 0.0  # synthesized but never played, when interrupted
    started_playing: bool = False
    finished: bool = False
    answer: Answer | None = None
    sample_rate: int = SIM_RATE  # the engine's
    block_s: float | None = None  # a device: the configured block size

    # -- the model and the network ----------------------------------------------

    async def model(self, network: Any) -> None:
        s, rng = self.scenario, self.rng
        tokens = token_texts(s.tokens, rng)
        self.written_chars = sum(map(len, tokens))
        burst_left = rng.randint(*s.bursts) if s.bursts else None
        async with network:
            await trio.sleep(0.4)  # time to first token
            for i in range(0, len(tokens), s.tokens_per_delta):
                delta = "".join(tokens[i : i + s.tokens_per_delta])
                start = trio.current_time()
                await network.send(delta)
                self.producer_waits.append(trio.current_time() - start)
                self.generated += min(s.tokens_per_delta, len(tokens) - i)
                await trio.sleep(s.tokens_per_delta / s.rate)
                if burst_left is not None and s.bursts:
                    burst_left -= s.tokens_per_delta
                    if burst_left <= 0:
                        await trio.sleep(rng.uniform(1, 5))
                        burst_left = rng.randint(*s.bursts)

    def source(self, network: Any) -> BaseSource:
        class NetworkSource(BaseSource):
            async def stream(self) -> AsyncGenerator[str]:
                async for delta in network:
                    yield delta

        return NetworkSource()

    # -- the engine ---------------------------------------------------------------

    async def synthesize(self, text: str) -> Audio:
        seconds = spoken_seconds(text, 180)
        await trio.sleep(seconds / 50)
        if self.scenario.stalls and self.rng.random() < self.scenario.stalls:
            await trio.sleep(self.rng.uniform(1, 3))
        return Audio(np.zeros(round(seconds * SIM_RATE), dtype=np.int16), SIM_RATE, text)

    # -- the sink: real time, a small device buffer --------------------------------

    async def write(self, audio: Audio) -> None:
        now = trio.current_time()
        if self.started_playing and now > self.device_until + 1e-9:
            self.underruns += 1
            self.underrun_s += now - self.device_until
        self.started_playing = True
        self.device_until = max(now, self.device_until) + audio.seconds
        self.played_chars += len(audio.text)
        await trio.sleep_until(self.device_until - DEVICE_BUFFER_S)

    async def drain(self) -> None:
        await trio.sleep_until(self.device_until)

    def audio_held_s(self) -> float:
        """Seconds of audio made and not yet played: in the audio channel, in the
        synthesizer's hands, in the device buffer."""
        assert self.answer is not None
        stats = self.answer.statistics()
        device_s = max(0.0, self.device_until - trio.current_time())
        return stats.channels["audio"].size + stats.synthesizing_s + device_s

    def memory(self) -> tuple[int, int]:
        """``(text bytes, audio bytes)`` held in the pipeline right now (text counted
        in characters: the demo answer is ASCII)."""
        if self.answer is None or self.finished or not self.answer.statistics().channels:
            return 0, 0
        channels = self.answer.statistics().channels
        text = int(channels["pieces"].size + channels["chunks"].size)
        return text, int(self.audio_held_s() * AUDIO_BYTES_PER_S)

    async def run(self, buffers: Buffers) -> None:
        network_out, network_in = open_channel(Fixed(NETWORK_TOKENS))
        scenario = self.scenario
        self.answer = Answer(self.source(network_in), self, self, Config(), buffers=buffers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.model, network_out)
            if scenario.stop_after_speech_s is not None:
                nursery.start_soon(self.interrupt, self.answer, scenario.stop_after_speech_s)
            await self.answer.run()
            self.finished = True
            nursery.cancel_scope.cancel()  # the listener stopped: the model's stream ends

    async def interrupt(self, answer: Answer, after: float) -> None:
        while not self.started_playing:
            await trio.sleep(0.05)
        await trio.sleep(after)
        self.unplayed_audio_s = self.audio_held_s()
        answer.stop()


@dataclass
class Result:
    scenario: str
    policy: str
    producer_timeouts: int
    longest_producer_wait_s: float
    peak_memory_bytes: int
    peak_text_bytes: int
    peak_audio_bytes: int
    ttfa_s: float | None
    underruns: int
    underrun_s: float
    wasted_tokens: int
    unplayed_audio_s: float
    completion_s: float
    occupancy: list[tuple[float, int]] = field(default_factory=list, repr=False)


async def run_scenario(scenario: Scenario, name: str, buffers: Buffers, seed: int) -> Result:
    rng = random.Random(seed)
    sessions = [Session(scenario, random.Random(rng.random())) for _ in range(scenario.sessions)]
    occupancy: list[tuple[float, int]] = []
    peaks = {"all": 0, "text": 0, "audio": 0}
    start = trio.current_time()

    async def sample() -> None:
        while True:
            text = audio = 0
            for s in sessions:
                t, a = s.memory()
                text, audio = text + t, audio + a
            total = text + audio
            peaks["all"] = max(peaks["all"], total)
            peaks["text"] = max(peaks["text"], text)
            peaks["audio"] = max(peaks["audio"], audio)
            occupancy.append((trio.current_time() - start, total))
            await trio.sleep(0.1 if scenario.sessions == 1 else 1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        async with trio.open_nursery() as runs:
            for i, session in enumerate(sessions):

                async def one(session: Session = session, delay: float = i * 0.002) -> None:
                    await trio.sleep(delay)
                    await session.run(buffers)

                runs.start_soon(one)
        nursery.cancel_scope.cancel()
    waits = [w for s in sessions for w in s.producer_waits]
    metrics = [s.answer.metrics for s in sessions if s.answer is not None]
    ttfas = [m.ttfa_s for m in metrics if m.ttfa_s is not None]
    wasted = 0
    if scenario.stop_after_speech_s is not None:
        for s in sessions:
            chars_per_token = s.written_chars / scenario.tokens
            wasted += max(0, s.generated - round(s.played_chars / chars_per_token))
    return Result(
        scenario.name,
        name,
        sum(w > STALL_BUDGET for w in waits),
        max(waits, default=0.0),
        peaks["all"],
        peaks["text"],
        peaks["audio"],
        statistics.median(ttfas) if ttfas else None,
        sum(s.underruns for s in sessions),
        sum(s.underrun_s for s in sessions),
        wasted,
        sum(s.unplayed_audio_s for s in sessions),
        trio.current_time() - start,
        occupancy,
    )


def run_one(scenario: Scenario, name: str, seed: int) -> Result:
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(run_scenario, scenario, name, policies()[name], seed, clock=clock)


def run_all(seed: int = 1) -> list[Result]:
    """Every scenario with every policy; runs are independent, so one process a core."""
    runs = [(scenario, name, seed) for scenario in SCENARIOS for name in policies()]
    runs.sort(key=lambda run: -run[0].sessions)  # the longest first
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        results = list(pool.map(run_one, *zip(*runs, strict=True)))
    order = {(s.name, n): i for i, (s, n, _) in enumerate(sorted(runs, key=_position))}
    return sorted(results, key=lambda r: order[(r.scenario, r.policy)])


def _position(run: tuple[Scenario, str, int]) -> tuple[int, int]:
    return SCENARIOS.index(run[0]), list(policies()).index(run[1])


def kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n < 10 * 1024**2 else f"{n / 1024**2:,.0f} MB"


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | policy | producer timeouts | longest producer wait | peak memory "
        "(text + audio) | first audio | underruns | wasted tokens (audio) | completion |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ttfa = f"{r.ttfa_s:.2f} s" if r.ttfa_s is not None else "-"
        lines.append(
            f"| {r.scenario} | {r.policy} | {r.producer_timeouts} | "
            f"{r.longest_producer_wait_s:.1f} s | {kb(r.peak_memory_bytes)} "
            f"({kb(r.peak_text_bytes)} + {kb(r.peak_audio_bytes)}) | {ttfa} | "
            f"{r.underruns} ({r.underrun_s:.1f} s) | {r.wasted_tokens} "
            f"({r.unplayed_audio_s:.0f} s) | {r.completion_s:.0f} s |"
        )
    return "\n".join(lines)


def plots(results: list[Result], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for r in results:
        if r.scenario == SCENARIOS[0].name:
            t, m = zip(*r.occupancy, strict=True)
            ax.plot(t, np.array(m) / 1024, label=r.policy)
    finish(
        fig, ax, out / "occupancy.png",
        xlabel="time (s)",
        ylabel="memory held in the pipeline (KB, log)",
        title="Long answer (4,000 tokens at 80 tok/s): occupancy over time",
    )  # fmt: skip

    fig, ax = plt.subplots(figsize=(9, 5))
    names = list(policies())
    for i, name in enumerate(names):
        mine = [r for r in results if r.policy == name]
        ax.scatter(
            [r.longest_producer_wait_s for r in mine],
            [r.peak_memory_bytes / 1024 for r in mine],
            label=name,
            color=plt.cm.tab10(i),
        )
    ax.axvline(STALL_BUDGET, color="grey", linestyle="--", label="stall budget")
    finish(
        fig, ax, out / "memory_vs_wait.png",
        xlabel="longest producer wait (s)",
        ylabel="peak memory (KB, log)",
        title="All scenarios: peak memory against longest producer wait",
    )  # fmt: skip


def finish(fig: Any, ax: Any, path: Path, **labels: str) -> None:
    """Label a plot (memory on a log scale), add its legend and save it."""
    ax.set(yscale="log", **labels)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare buffer policies in virtual time.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks") / "results")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run_all(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    report = [{k: v for k, v in asdict(r).items() if k != "occupancy"} for r in results]
    (args.out / "buffers.json").write_text(json.dumps(report, indent=2) + "\n")
    plots(results, args.out)
    print(table(results))
    print(
        f"\n{len(results)} runs in {time.perf_counter() - started:.0f} s of wall time",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
