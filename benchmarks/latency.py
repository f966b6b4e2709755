"""Latency of the whole command, on the wall clock (not a test: it gates nothing).

    .venv/bin/python benchmarks/latency.py [--runs N]

Measures, over N runs each, through the real CLI and the real espeak-ng:
- ttft_s, ttfa_s and ttfa_s - ttft_s (the pipeline's own delay to first audio) for the demo
  source and for the anthropic source against the loopback server of the tests, streaming
  at ~60 tokens/s;
- the Ctrl-C latency: from SIGINT during speech to the process having exited.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import fake_anthropic

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


def summary(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    rows = []
    fake = fake_anthropic.start()
    text = fake_anthropic.Script().text * 6
    fake.script = fake_anthropic.Script(text=text, piece=4, delay_s=1 / 60)
    api_env = ENV | {"ANTHROPIC_API_KEY": "sk-benchmark", "ANTHROPIC_BASE_URL": fake.base_url}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
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
    print("| source | ttft_s | ttfa_s | ttfa_s - ttft_s |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nCtrl-C during speech (WAV mode) to exit 130: {summary(interrupts)}")


if __name__ == "__main__":
    main()
