"""Latency of the whole command, on the wall clock (not a test: it gates nothing).

    .venv/bin/python benchmarks/latency.py [--runs N]

Measures, over N runs each, through the real CLI and the real espeak-ng:
- start-up: from starting the process to the request reaching the (loopback) model, to
  the first text printed and to the first audio in the WAV, for each source;
- ttft_s, ttfa_s and ttfa_s - ttft_s (the pipeline's own delay to first audio) for the demo
  source and for the anthropic source against the loopback server of the tests, streaming
  at ~60 tokens/s;
- the Ctrl-C latency: from SIGINT during speech to the process having exited;
- with ``--engines``, espeak and Piper side by side: real-time factor (the demo's
  chunks synthesized in process), the first chunk's synthesis time, and for the demo
  on the speaker (a private PulseAudio null sink) ttfa_s - ttft_s and the underruns
  after first audio.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voicestream import testing

CLI = [sys.executable, "-m", "voicestream", "say"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "VOICESTREAM_"))}


def run_metrics(args: list[str], env: dict[str, str], workdir: Path) -> dict[str, float]:
    metrics = workdir / "m.json"
    command = [*CLI, *args, "--out", str(workdir / "a.wav"), "--metrics", str(metrics)]
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=workdir)
    figures: dict[str, float] = json.loads(metrics.read_text())
    return figures


def ctrl_c_latency(workdir: Path) -> float:
    out = workdir / "c.wav"
    out.unlink(missing_ok=True)
    process = subprocess.Popen(
        [*CLI, "-", "--out", str(out)], env=ENV, cwd=workdir, stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(b"A sentence to be interrupted while it is spoken. And more. " * 20)
    process.stdin.flush()
    while not (out.exists() and out.stat().st_size > 44 + 22050):
        time.sleep(0.01)
    start = time.perf_counter()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=30)
    assert code == 130, code
    return time.perf_counter() - start


def startup(args: list[str], env: dict[str, str], workdir: Path, fake: Any) -> dict[str, float]:
    """Seconds from process start to the first request, first text and first audio."""
    out = workdir / "s.wav"
    out.unlink(missing_ok=True)
    requests = len(fake.requests)
    start = time.monotonic()
    process = subprocess.Popen(
        [*CLI, *args, "--out", str(out)], env=env, cwd=workdir, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    figures: dict[str, float] = {}
    while "audio" not in figures and process.poll() is None:
        now = time.monotonic() - start
        if "request" not in figures and len(fake.requests) > requests:
            figures["request"] = fake.requests[requests].received_at - start
        if "text" not in figures and process.stdout.read(1):
            figures["text"] = now
        if out.exists() and out.stat().st_size > 44:
            figures["audio"] = now
        time.sleep(0.002)
    process.wait(timeout=60)
    return figures


def chat_startup(env: dict[str, str], workdir: Path, fake: Any) -> tuple[float, float]:
    """``voicestream chat`` on a pseudo-terminal with the anthropic source: seconds from
    start to the prompt, and from Enter (typed 2 s later, as a person would) to the request."""
    start = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(workdir)
        argv = [sys.executable, "-m", "voicestream", "chat", "--out", str(workdir)]
        os.execve(argv[0], argv, env | {"TERM": "dumb"})
    output = b""
    while b"> " not in output:
        output += os.read(fd, 4096)
    prompt = time.monotonic() - start
    time.sleep(2.0)  # typing the question
    requests = len(fake.requests)
    enter = time.monotonic()
    os.write(fd, b"Hello?\r")
    while len(fake.requests) == requests:
        time.sleep(0.002)
    to_request = fake.requests[requests].received_at - enter
    os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
    os.close(fd)
    return prompt, to_request


def engine_speed(engine: str) -> tuple[float, float]:
    """``(real-time factor, first chunk's synthesis seconds)`` for the demo answer."""
    import trio

    from voicestream.chunker import SentenceChunker
    from voicestream.config import VoiceConfig
    from voicestream.sources.demo import demo_answer
    from voicestream.synthesizers import open_synthesizer

    chunker = SentenceChunker()
    chunks = chunker.feed(demo_answer()) + chunker.flush()

    async def run() -> tuple[float, float]:
        synthesizer = await open_synthesizer(VoiceConfig(engine=engine))
        await synthesizer.synthesize("Warm up.")
        took, audio_s, first = 0.0, 0.0, 0.0
        for i, chunk in enumerate(chunks):
            start = time.perf_counter()
            audio = await synthesizer.synthesize(chunk)
            took += time.perf_counter() - start
            first = first or took
            audio_s += audio.seconds
            assert i or first > 0
        return took / audio_s, first

    return trio.run(run)


def engines(runs: int, workdir: Path) -> None:
    (workdir / "pulse").mkdir()
    daemon, pulse_env = testing.start_pulse(workdir / "pulse")
    try:
        print("\n| engine | real-time factor | first chunk's synthesis | demo on the speaker: "
              "ttfa_s - ttft_s | underruns after first audio |")  # fmt: skip
        print("|---|---|---|---|---|")
        for engine in ("espeak", "piper"):
            speeds = [engine_speed(engine) for _ in range(runs)]
            figures = []
            for _ in range(runs):
                metrics = workdir / "e.json"
                subprocess.run(
                    [*CLI, "--source", "demo", "--engine", engine, "--metrics", str(metrics)],
                    env=ENV | pulse_env, check=True, capture_output=True, cwd=workdir,
                )  # fmt: skip
                figures.append(json.loads(metrics.read_text()))
            rtf = [s[0] for s in speeds]
            gap = [f["ttfa_s"] - f["ttft_s"] for f in figures]
            underruns = [f["underruns"] for f in figures]
            print(
                f"| {engine} | {statistics.median(rtf):.3f} (max {max(rtf):.3f}) | "
                f"{summary([s[1] for s in speeds])} | {summary(gap)} | "
                f"{statistics.median(underruns):g} (max {max(underruns)}) |"
            )
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", action="store_true", help="only espeak against Piper")
    args = parser.parse_args()
    runs = args.runs
    if args.engines:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{runs} runs each, median (max); the demo answer at 60 tokens/s")
            engines(runs, Path(tmp))
        return
    rows = []
    fake = testing.start()
    text = testing.Script().text * 6
    fake.script = testing.Script(text=text, piece=4, delay_s=1 / 60)
    api_env = ENV | {"ANTHROPIC_API_KEY": "sk-benchmark", "ANTHROPIC_BASE_URL": fake.base_url}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        starts = []
        for name, args, env in (
            ("demo", ["--source", "demo"], ENV),
            ("anthropic (loopback)", ["question", "--source", "anthropic"], api_env),
        ):
            runs_ = [startup(args, env, workdir, fake) for _ in range(runs)]
            starts.append(
                (
                    name,
                    summary([r["request"] for r in runs_]) if "request" in runs_[0] else "-",
                    summary([r["text"] for r in runs_]),
                    summary([r["audio"] for r in runs_]),
                )
            )
        chats = [chat_startup(api_env, workdir, fake) for _ in range(runs)]
        for name, args, env in (
            ("demo", ["--source", "demo"], ENV),
            ("anthropic (loopback, 60 tok/s)", ["question", "--source", "anthropic"], api_env),
        ):
            figures = [run_metrics(args, env, workdir) for _ in range(runs)]
            ttft = [f["ttft_s"] for f in figures]
            ttfa = [f["ttfa_s"] for f in figures]
            gap = [a - b for a, b in zip(ttfa, ttft, strict=True)]
            rows.append((name, summary(ttft), summary(ttfa), summary(gap)))
        interrupts = [ctrl_c_latency(workdir) for _ in range(runs)]
    fake.close()
    print(f"{runs} runs each, median (max)\n")
    print("| source | start to request | start to first text | start to first audio |")
    print("|---|---|---|---|")
    for row in starts:
        print("| " + " | ".join(row) + " |")
    prompt, request = zip(*chats, strict=True)
    print(
        f"\nchat (anthropic): start to prompt {summary(list(prompt))}; Enter (2 s later) to "
        f"request {summary(list(request))}\n"
    )
    print("| source | ttft_s | ttfa_s | ttfa_s - ttft_s |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nCtrl-C during speech (WAV mode) to exit 130: {summary(interrupts)}")


if __name__ == "__main__":
    main()
