"""Latency of the whole command, on the wall clock (not a test: it gates nothing).

    .venv/bin/python benchmarks/latency.py [--runs N]

Measures, over N runs each, through the real CLI and the real espeak-ng:
- start-up: from starting the process to the request reaching the (loopback) model, to
  the first text printed and to the first audio in the WAV, for each source;
- ttft_s, ttfa_s and ttfa_s - ttft_s (the pipeline's own delay to first audio) for the demo
  source and for the anthropic source against the loopback server of the tests, streaming
  at ~60 tokens/s;
- the Ctrl-C latency: from SIGINT during speech to the process having exited;
- with ``--engines``, espeak and Piper (one onnxruntime thread, and two) side by
  side, the demo answer on the speaker (a private PulseAudio null sink): the
  real-time factor during the answers (``synthesis_s / audio_s``), the first chunk's
  synthesis (in process), ``ttfa_s - ttft_s`` against its floor (the first chunk's
  audio existing, ``first_chunk_ready_s - ttft_s``: its text complete plus its
  synthesis) and the head start pacing gave a slow engine, the underruns after first
  audio; then the same engines behind the loopback Anthropic server at 60 tokens/s:
  the longest gap between two pieces read (the loop starved?) and the underruns.
  ``--load N`` keeps N busy processes running meanwhile (``--nice N`` runs
  voicestream at that nice level: a busier machine still).
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


def engine_speed(engine: str, threads: int) -> float:
    """The first chunk of the demo answer's synthesis, in seconds (warmed up)."""
    import trio

    from voicestream.chunker import SentenceChunker
    from voicestream.config import VoiceConfig
    from voicestream.sources.demo import demo_answer
    from voicestream.synthesizers import open_synthesizer

    first = SentenceChunker().feed(demo_answer())[0]

    async def run() -> float:
        synthesizer = await open_synthesizer(VoiceConfig(engine=engine, piper_threads=threads))
        await synthesizer.synthesize("Warm up.")
        start = time.perf_counter()
        await synthesizer.synthesize(first)
        return time.perf_counter() - start

    return trio.run(run)


ENGINES = (
    ("espeak", "espeak", 1),
    ("piper, 1 thread", "piper", 1),
    ("piper, 2 threads (shipped)", "piper", 2),
)


def engines(runs: int, workdir: Path, load: int, nice: int) -> None:
    from voicestream.sources.demo import demo_answer

    (workdir / "pulse").mkdir()
    daemon, pulse_env = testing.start_pulse(workdir / "pulse")
    fake = testing.start()
    fake.script = testing.Script(text=demo_answer().split("The pipeline")[0], delay_s=1 / 60)
    api_env = {"ANTHROPIC_API_KEY": "sk-benchmark", "ANTHROPIC_BASE_URL": fake.base_url}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    niced = ["nice", "-n", str(nice)] if nice else []

    def say(args: list[str], env: dict[str, str]) -> dict[str, Any]:
        metrics = workdir / "e.json"
        subprocess.run(
            [*niced, *CLI, *args, "--metrics", str(metrics)], env=ENV | pulse_env | env,
            check=True, capture_output=True, cwd=workdir,
        )  # fmt: skip
        figures: dict[str, Any] = json.loads(metrics.read_text())
        return figures

    try:
        print(
            "| engine | real-time factor | first chunk's synthesis | demo: ttfa_s - ttft_s | "
            "its floor | head start | underruns after first audio | loopback at 60 tok/s: "
            "longest gap between pieces | underruns |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, engine, threads in ENGINES:
            env = {"VOICESTREAM_VOICE_PIPER_THREADS": str(threads)}
            first = [engine_speed(engine, threads) for _ in range(runs)]
            demo = [say(["--source", "demo", "--engine", engine], env) for _ in range(runs)]
            loop = [
                say(["question", "--source", "anthropic", "--engine", engine], env | api_env)
                for _ in range(runs)
            ]
            rtf = [f["synthesis_s"] / f["audio_s"] for f in demo + loop]
            gap = [f["ttfa_s"] - f["ttft_s"] for f in demo]
            floor = [f["first_chunk_ready_s"] - f["ttft_s"] for f in demo]
            print(
                f"| {name} | {statistics.median(rtf):.3f} (max {max(rtf):.3f}) | "
                f"{summary(first)} | {summary(gap)} | {summary(floor)} | "
                f"{summary([f['head_start_s'] for f in demo])} | {count(demo, 'underruns')} | "
                f"{summary([f['longest_token_gap_s'] for f in loop])} | "
                f"{count(loop, 'underruns')} |"
            )
    finally:
        for hog in hogs:
            hog.kill()
        fake.close()
        daemon.terminate()
        daemon.wait(timeout=10)


def count(figures: list[dict[str, Any]], key: str) -> str:
    values = [f[key] for f in figures]
    return f"{statistics.median(values):g} (max {max(values)})"


def summary(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", action="store_true", help="only espeak against Piper")
    parser.add_argument("--load", type=int, default=0, help="with --engines: N busy processes")
    parser.add_argument("--nice", type=int, default=0, help="with --engines: voicestream's nice")
    args = parser.parse_args()
    runs = args.runs
    if args.engines:
        with tempfile.TemporaryDirectory() as tmp:
            busy = f", {args.load} busy processes beside it" if args.load else ""
            niced = f", voicestream at nice {args.nice}" if args.nice else ""
            print(f"{runs} runs each, median (max); the demo answer at 60 tokens/s{busy}{niced}")
            print()
            engines(runs, Path(tmp), args.load, args.nice)
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
