"""Buffer policies compared: the real answer runner, simulated parts, virtual time.

    voicestream bench [--out DIR] [--seeds N]   (or: .venv/bin/python benchmarks/buffers.py)
    voicestream bench --real                    (real clock at scale: voicestream.bench_real)

Each session is a real :class:`voicestream.runner.Answer` (the pipeline with its
channels and chunker, unchanged, at the shipped settings); around it, a simulated
model, network, engine and real-time sink, all in trio's virtual time (MockClock).
Every scenario runs seeds 1-10 for every policy; the table gives the mean and the
worst. What is held is read from the answer's public statistics only.

- The model writes Server-Sent Events (one text delta each, as the Messages API
  does) into a network buffer as large as a real loopback TCP connection holds:
  measured at the start of the run (the kernel's socket buffers, autotuned) and
  printed. It can go on writing only while that has room; a *producer timeout*
  is a write that waited longer than the shipped stall budget (``[buffers]
  stall_budget_s``).
- The engine takes a fraction of the audio's length to synthesize: espeak-like
  1/50, Piper-like 0.3 with jitter (what was measured on this kind of machine),
  plus 1-3 s stalls in the hiccup scenario; it produces silence as long as espeak
  would speak the text.
- The sink plays in real time with a 0.2 s device buffer; an *underrun* is a wait
  for audio after playback began and before the answer ended.
- Wasted, when the listener interrupts: tokens the model generated that were never
  spoken, and (in brackets) seconds of audio synthesized that were never played.
- Memory held in the pipeline: text in the channels (bytes), audio in the channels,
  in the synthesizer's hands and in the device buffer (22050 Hz 16-bit: 44,100
  bytes per second), sampled every 0.1 s.

The policies: today's (``Fixed(n)`` items on every channel, ``Unbounded``), the
decoupled baselines one would write first (text unbounded, or bounded at 4,096
characters, with audio bounded at 1, 2 or 4 seconds), and ``Adaptive`` (the
shipped ``[buffers]``). All of them are paced as the pipeline ships
(:mod:`voicestream.pacing`: a slow engine's chunk said in parts, a head start for
the first audio); ``Adaptive, whole chunks`` is the shipped buffers without it.

Writes a markdown table to stdout, and buffers.json, buffers.md, occupancy.png and
memory_vs_wait.png to --out (default: a new bench-DATE folder in the current one;
``make bench`` writes the committed benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import sys
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import trio
import trio.testing

from .audio import Audio
from .channels import Fixed, Policy, Unbounded, open_channel
from .config import BuffersConfig, Config
from .pipeline import Buffers
from .runner import Answer
from .sinks import ClockedSink
from .sources import BaseSource
from .sources.demo import demo_answer
from .synthesizers.silent import spoken_seconds

SHIPPED = BuffersConfig()
STALL_BUDGET = SHIPPED.stall_budget_s
AUDIO_BYTES_PER_S = 22050 * 2
SIM_RATE = 100  # the simulated audio's sample rate: tiny arrays, real durations
DEVICE_BUFFER_S = 0.2
SEEDS = range(1, 11)


def sse_delta(text: str) -> bytes:
    """One text delta as the Messages API sends it."""
    data = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    return f"event: content_block_delta\ndata: {json.dumps(data)}\n\n".encode()


def measure_network(idle_s: float = 1.0) -> int:
    """Bytes a loopback TCP connection holds when its reader stops reading: the
    sender writes SSE deltas until the kernel has taken nothing for ``idle_s``
    (its send and receive buffers, grown by autotuning as they fill)."""
    server = socket.create_server(("127.0.0.1", 0))
    reader = socket.create_connection(server.getsockname())
    writer, _ = server.accept()
    with server, reader, writer:  # the reader is open and never reads
        writer.setblocking(False)
        events = sse_delta("abc") * 100
        written, idle_since = 0, time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            try:
                written += writer.send(events)
                idle_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        return written


def policies() -> dict[str, Buffers]:
    def both(text: Policy, audio: Policy) -> Buffers:
        return Buffers(text, audio, SHIPPED.audio_block_s, STALL_BUDGET)

    out = {f"Fixed({n})": both(Fixed(n), Fixed(n)) for n in (4, 16, 64, 256)}
    out["Unbounded"] = both(Unbounded(), Unbounded())
    for seconds in (1, 2, 4):
        out[f"text unbounded, audio {seconds} s"] = both(Unbounded(), Fixed(seconds, units=True))
    for seconds in (1, 2, 4):
        out[f"text 4,096 chars, audio {seconds} s"] = both(
            Fixed(4096, units=True), Fixed(seconds, units=True)
        )
    out["Adaptive"] = Buffers.from_config(SHIPPED)
    out[WHOLE] = Buffers.from_config(SHIPPED)
    return out


# The shipped buffers, but every chunk synthesized whole and no head start for the
# first audio (chunker.pace = false): what pacing a slow engine is measured against.
# Every other policy runs paced, as the pipeline ships.
WHOLE = "Adaptive, whole chunks (not paced)"


@dataclass(frozen=True)
class Scenario:
    name: str
    tokens: int
    rate: float  # tokens per second while writing
    bursts: tuple[int, int] | None = None  # tokens per burst, then a pause of 1-5 s
    stalls: float = 0.0  # chance that a synthesis stalls for 1-3 s
    stop_after_speech_s: float | None = None
    engine: str = "espeak"  # "espeak": 1/50 of real time; "piper": ~0.3, with jitter
    until_written: bool = False  # the run ends with the model's last token


ENGINE_RTF = {"espeak": (0.02, 0.0), "piper": (0.3, 0.25)}  # mean, lognormal sigma

SCENARIOS = [
    Scenario("1 long answer", 4000, 80),
    Scenario("2 bursty model", 2000, 200, bursts=(100, 300)),
    Scenario("3 synthesis hiccups", 2000, 80, stalls=0.08),
    Scenario("4 slow model", 600, 8),
    Scenario("5 interruption", 4000, 80, stop_after_speech_s=5.0),
    Scenario("5b interruption after 10 s", 4000, 80, stop_after_speech_s=10.0),
    Scenario("6 Piper-like engine", 2000, 80, engine="piper"),
    # Longer than the network holds: the backlog of unspoken text outgrows it.
    Scenario(
        "7 network fills: 48,000 tokens at 180/s, Piper-like",
        48000,
        180,
        engine="piper",
        until_written=True,
    ),
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
class Session(ClockedSink):
    """One simulated answer: model, network, engine and sink around a real Answer."""

    scenario: Scenario
    rng: random.Random  # the model's and the network's draws
    engine_rng: random.Random  # the engine's: apart, so every policy sees the same of each
    network_bytes: int
    generated: int = 0
    producer_waits: list[float] = field(default_factory=list)
    played_chars: int = 0
    written_chars: int = 0
    unplayed_audio_s: float = 0.0  # synthesized but never played, when interrupted
    finished: bool = False
    answer: Answer | None = None
    sample_rate: int = SIM_RATE  # the engine's
    lead_s: float = DEVICE_BUFFER_S

    # -- the model and the network ----------------------------------------------

    async def model(self, network: Any) -> None:
        s, rng = self.scenario, self.rng
        tokens = token_texts(s.tokens, rng)
        self.written_chars = sum(map(len, tokens))
        burst_left = rng.randint(*s.bursts) if s.bursts else None
        async with network:
            await trio.sleep(0.4)  # time to first token
            for delta in tokens:
                start = trio.current_time()
                await network.send(delta)
                self.producer_waits.append(trio.current_time() - start)
                self.generated += 1
                await trio.sleep(1 / s.rate)
                if burst_left is not None and s.bursts:
                    burst_left -= 1
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
        rtf, sigma = ENGINE_RTF[self.scenario.engine]
        rng = self.engine_rng
        await trio.sleep(seconds * rtf * (rng.lognormvariate(0, sigma) if sigma else 1))
        if self.scenario.stalls and rng.random() < self.scenario.stalls:
            await trio.sleep(rng.uniform(1, 3))
        return Audio(np.zeros(round(seconds * SIM_RATE), dtype=np.int16), SIM_RATE, text)

    # -- the sink: real time, a small device buffer --------------------------------

    async def write(self, audio: Audio) -> None:
        self.played_chars += len(audio.text)
        await self.play(audio.seconds)

    def audio_held_s(self) -> float:
        """Seconds of audio made and not yet played: in the audio channel, in the
        synthesizer's hands, in the device buffer."""
        assert self.answer is not None
        stats = self.answer.statistics()
        return stats.channels["audio"].size + stats.synthesizing_s + self.held_s()

    def memory(self) -> tuple[int, int]:
        """``(text bytes, audio bytes)`` held in the pipeline right now (text counted
        in characters: the demo answer is ASCII)."""
        if self.answer is None or self.finished or not self.answer.statistics().channels:
            return 0, 0
        channels = self.answer.statistics().channels
        text = int(channels["chunks"].size)
        return text, int(self.audio_held_s() * AUDIO_BYTES_PER_S)

    async def run(self, buffers: Buffers, pace: bool = True) -> None:
        wire_bytes = lambda delta: len(sse_delta(delta))  # noqa: E731
        network_out, network_in = open_channel(Fixed(self.network_bytes), wire_bytes)
        scenario = self.scenario
        config = Config()
        config = replace(config, chunker=replace(config.chunker, pace=pace))
        self.answer = Answer(self.source(network_in), self, self, config, buffers=buffers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                self.model_then_stop if scenario.until_written else self.model, network_out
            )
            if scenario.stop_after_speech_s is not None:
                nursery.start_soon(self.interrupt, self.answer, scenario.stop_after_speech_s)
            await self.answer.run()
            self.finished = True
            nursery.cancel_scope.cancel()  # the listener stopped: the model's stream ends

    async def model_then_stop(self, network: Any) -> None:
        await self.model(network)
        assert self.answer is not None
        self.answer.stop()

    async def interrupt(self, answer: Answer, after: float) -> None:
        while self.device_until is None:
            await trio.sleep(0.05)
        await trio.sleep(after)
        self.unplayed_audio_s = self.audio_held_s()
        answer.stop()


@dataclass
class Result:
    scenario: str
    policy: str
    seed: int
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


def draws(scenario: Scenario, seed: int) -> tuple[random.Random, random.Random]:
    """The model's and the engine's random generators for a scenario and a seed: the
    same for every policy (common random numbers), so that policies are compared on
    the same tokens, bursts, synthesis times and stalls, not on different luck. The
    engine's k-th synthesis gets the k-th draw whatever the policy."""
    return (
        random.Random(f"{scenario.name}/{seed}/model"),
        random.Random(f"{scenario.name}/{seed}/engine"),
    )


async def run_scenario(
    scenario: Scenario, name: str, buffers: Buffers, seed: int, network_bytes: int
) -> Result:
    sessions = [Session(scenario, *draws(scenario, seed), network_bytes)]
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
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        await sessions[0].run(buffers, pace=name != WHOLE)
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
        seed,
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


def run_one(scenario: Scenario, name: str, seed: int, network_bytes: int) -> Result:
    clock = trio.testing.MockClock(autojump_threshold=0)
    buffers = policies()[name]
    return trio.run(run_scenario, scenario, name, buffers, seed, network_bytes, clock=clock)


def run_all(network_bytes: int, seeds: range = SEEDS) -> list[Result]:
    """Every scenario with every policy and seed; runs are independent: one process a core."""
    runs = [(s, name, seed) for s in SCENARIOS for name in policies() for seed in seeds]
    runs.sort(key=lambda run: -run[0].tokens)  # the longest first
    scenarios, names, seeds_ = zip(*runs, strict=True)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        results = list(
            pool.map(run_one, scenarios, names, seeds_, [network_bytes] * len(runs), chunksize=4)
        )
    order = {name: i for i, name in enumerate(policies())}
    position = {s.name: i for i, s in enumerate(SCENARIOS)}
    return sorted(results, key=lambda r: (position[r.scenario], order[r.policy], r.seed))


@dataclass(frozen=True)
class Summary:
    """One policy in one scenario over the seeds: means and worsts."""

    scenario: str
    policy: str
    seeds: int
    timeouts_mean: float
    timeouts_worst: int
    longest_wait_worst_s: float
    memory_mean: float
    memory_worst: int
    text_worst: int
    audio_worst: int
    ttfa_mean_s: float | None
    underruns_mean: float
    underruns_by_seed: tuple[int, ...]  # in seed order: policies compared seed by seed
    underruns_worst: int
    underrun_s_worst: float
    wasted_mean: float
    wasted_worst: int
    unplayed_mean_s: float
    completion_mean_s: float


def summarize(results: list[Result]) -> list[Summary]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.policy), []).append(r)
    out = []
    for (scenario, policy), rs in groups.items():
        ttfas = [r.ttfa_s for r in rs if r.ttfa_s is not None]
        out.append(
            Summary(
                scenario,
                policy,
                len(rs),
                statistics.fmean(r.producer_timeouts for r in rs),
                max(r.producer_timeouts for r in rs),
                max(r.longest_producer_wait_s for r in rs),
                statistics.fmean(r.peak_memory_bytes for r in rs),
                max(r.peak_memory_bytes for r in rs),
                max(r.peak_text_bytes for r in rs),
                max(r.peak_audio_bytes for r in rs),
                statistics.fmean(ttfas) if ttfas else None,
                statistics.fmean(r.underruns for r in rs),
                tuple(r.underruns for r in sorted(rs, key=lambda r: r.seed)),
                max(r.underruns for r in rs),
                max(r.underrun_s for r in rs),
                statistics.fmean(r.wasted_tokens for r in rs),
                max(r.wasted_tokens for r in rs),
                statistics.fmean(r.unplayed_audio_s for r in rs),
                statistics.fmean(r.completion_s for r in rs),
            )
        )
    return out


def kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n < 10 * 1024**2 else f"{n / 1024**2:,.0f} MB"


def table(summaries: list[Summary]) -> str:
    lines = [
        "| scenario | policy | producer timeouts | longest wait | peak memory "
        "(worst: text + audio) | first audio | underruns (worst s) | wasted tokens "
        "(audio) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summaries:
        ttfa = f"{r.ttfa_mean_s:.2f} s" if r.ttfa_mean_s is not None else "-"
        wasted = (
            f"{r.wasted_mean:,.0f} / {r.wasted_worst:,} ({r.unplayed_mean_s:.0f} s)"
            if "interruption" in r.scenario
            else "-"
        )
        lines.append(
            f"| {r.scenario} | {r.policy} | {r.timeouts_mean:g} / {r.timeouts_worst} | "
            f"{r.longest_wait_worst_s:.1f} s | {kb(round(r.memory_mean))} / "
            f"{kb(r.memory_worst)} ({kb(r.text_worst)} + {kb(r.audio_worst)}) | {ttfa} | "
            f"{r.underruns_mean:g} / {r.underruns_worst} ({r.underrun_s_worst:.1f} s) | "
            f"{wasted} |"
        )
    return "\n".join(lines)


def within_spread(ours: Summary, theirs: Summary) -> bool:
    """Whether two policies' underruns differ by no more than chance: both saw the same
    draws seed by seed, so the differences are paired; a mean difference within two
    standard errors of those differences is not one."""
    pairs = [a - b for a, b in zip(ours.underruns_by_seed, theirs.underruns_by_seed, strict=True)]
    mean = statistics.fmean(pairs)
    if mean == 0 or len(pairs) < 2:
        return False
    return bool(abs(mean) <= 2 * statistics.stdev(pairs) / math.sqrt(len(pairs)))


def targets(summaries: list[Summary]) -> str:
    """Adaptive against the baselines, scenario by scenario: the issue's four targets."""
    lines = [
        "| scenario | Adaptive timeouts (worst) | underruns: Adaptive / fewest of any "
        "baseline (mean, worst) | peak memory: Adaptive / best comparable baseline "
        "(worst) | wasted tokens: Adaptive / fewest zero-timeout baseline (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for scenario in dict.fromkeys(r.scenario for r in summaries):
        rows = [r for r in summaries if r.scenario == scenario]
        ours = next(r for r in rows if r.policy == "Adaptive")
        others = [r for r in rows if r.policy != "Adaptive"]
        fewest = min(others, key=lambda r: (r.underruns_mean, r.underruns_worst))
        fair = [
            r
            for r in others
            if r.timeouts_worst == 0
            and r.underruns_mean <= ours.underruns_mean
            and r.underruns_worst <= ours.underruns_worst
        ]
        if fair:
            best = min(fair, key=lambda r: r.memory_worst)
            memory = (
                f"{kb(ours.memory_worst)} / {kb(best.memory_worst)} ({best.policy}): "
                f"{ours.memory_worst / best.memory_worst:.2f}x"
            )
        else:
            memory = f"{kb(ours.memory_worst)} / none as good"
        wasted = "-"
        zero = [r for r in others if r.timeouts_worst == 0]
        if "interruption" in scenario and zero:
            least = min(zero, key=lambda r: r.wasted_mean)
            wasted = f"{ours.wasted_mean:,.0f} / {least.wasted_mean:,.0f} ({least.policy})"
        note = " (within the spread)" if within_spread(ours, fewest) else ""
        lines.append(
            f"| {scenario} | {ours.timeouts_worst} | {ours.underruns_mean:g}, "
            f"{ours.underruns_worst} / {fewest.underruns_mean:g}, {fewest.underruns_worst} "
            f"({fewest.policy}){note} | {memory} | {wasted} |"
        )
    return "\n".join(lines)


def plots(results: list[Result], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(policies())
    colour = {name: plt.cm.tab20(i) for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(10, 6))
    for r in results:
        if r.scenario == SCENARIOS[0].name and r.seed == SEEDS[0]:
            t, m = zip(*r.occupancy, strict=True)
            ax.plot(t, np.array(m) / 1024, label=r.policy, color=colour[r.policy])
    finish(
        fig, ax, out / "occupancy.png",
        xlabel="time (s)",
        ylabel="memory held in the pipeline (KB, log)",
        title="Long answer (4,000 tokens at 80 tok/s, seed 1): occupancy over time",
    )  # fmt: skip

    fig, ax = plt.subplots(figsize=(10, 6))
    for name in names:
        mine = [r for r in results if r.policy == name]
        ax.scatter(
            [r.longest_producer_wait_s for r in mine],
            [r.peak_memory_bytes / 1024 for r in mine],
            label=name,
            color=colour[name],
            s=12,
        )
    ax.axvline(STALL_BUDGET, color="grey", linestyle="--", label="stall budget")
    finish(
        fig, ax, out / "memory_vs_wait.png",
        xlabel="longest producer wait (s)",
        ylabel="peak memory (KB, log)",
        title="Every scenario and seed: peak memory against longest producer wait",
    )  # fmt: skip


def finish(fig: Any, ax: Any, path: Path, **labels: str) -> None:
    """Label a plot (memory on a log scale), add its legend and save it."""
    ax.set(yscale="log", **labels)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare buffer policies in virtual time.")
    parser.add_argument(
        "--out", type=Path, help="where the results go (a new bench-DATE folder here)"
    )
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds 1..N (10)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    network_bytes = measure_network()
    tokens = network_bytes // len(sse_delta("abc"))
    network = (
        f"Network buffer, measured on a loopback TCP connection whose reader stopped: "
        f"{network_bytes:,} bytes, {tokens:,} text deltas of 3 characters. "
        f"Stall budget {STALL_BUDGET:g} s (shipped); seeds 1-{args.seeds}; "
        "each cell: mean / worst."
    )
    print(network, file=sys.stderr)
    results = run_all(network_bytes, range(1, args.seeds + 1))
    summaries = summarize(results)
    out = results_dir(args.out, Path.cwd())
    report = {
        "network_bytes": network_bytes,
        "stall_budget_s": STALL_BUDGET,
        "summaries": [asdict(r) for r in summaries],
        "runs": [{k: v for k, v in asdict(r).items() if k != "occupancy"} for r in results],
    }
    (out / "buffers.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = f"{network}\n\n{table(summaries)}\n\n{targets(summaries)}\n"
    (out / "buffers.md").write_text(markdown)
    plots(results, out)
    print(markdown)
    print(
        f"{len(results)} runs in {time.perf_counter() - started:.0f} s of wall time; wrote "
        f"buffers.md, buffers.json and the plots to {out}/",
        file=sys.stderr,
    )
    return 0


def results_dir(out: Path | None, here: Path) -> Path:
    """``out``, made; or a new ``bench-DATE-TIME`` folder in ``here``: a run never
    writes over results it was not asked to (the committed ones are ``make bench``'s)."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = here / f"bench-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = here / f"bench-{stamp}-{n}"
    out.mkdir(parents=True, exist_ok=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
