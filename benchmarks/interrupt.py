"""Barge-in latency of `voicestream chat`, key to silence, on the wall clock.

    .venv/bin/python benchmarks/interrupt.py [--runs N] [--engine espeak|piper]

Starts a private PulseAudio with a null sink (as the tests do), runs
`voicestream chat` (demo answers, real espeak-ng or Piper, real PortAudio) on a
pseudo-terminal, and records the sink's monitor in this process. For each run
it asks a question, waits until speech has played for a while, presses Enter
(or Esc), and measures:

- key to silence: from writing the key to the pty until the arrival of the last
  recorded block with any non-zero sample (the monitor goes on delivering
  blocks of zeros, so silence is measured, not missing data; the arrival time
  includes the recording's own latency, so this is an upper bound);
- key to prompt: until the prompt is printed again.

Not a test; it gates nothing. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voicestream.testing import Terminal, start_pulse

RATE = 22050
LOUD = 300  # int16 peak of a block that holds speech (espeak peaks at ~10,000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--engine", default="espeak")
    args = parser.parse_args()
    runs = args.runs
    with tempfile.TemporaryDirectory() as tmp:
        daemon, env = start_pulse(Path(tmp))  # as the tests do
        os.environ.update(env)  # before PortAudio is loaded: record from this server
        import numpy as np
        import sounddevice as sd

        blocks: list[tuple[float, int]] = []  # (arrival, peak)

        def record(indata: Any, frames: int, when: Any, status: Any) -> None:
            blocks.append((time.monotonic(), int(np.abs(indata).max())))

        recorder = sd.InputStream(
            samplerate=RATE, channels=1, dtype="int16", device="vs_null.monitor"
            if any(d["name"] == "vs_null.monitor" for d in sd.query_devices())
            else None, blocksize=256, latency="low", callback=record,
        )  # fmt: skip
        argv = [sys.executable, "-m", "voicestream", "chat", "--engine", args.engine]
        term = Terminal(argv, env, Path(tmp))
        term.expect(rb"> ")
        silence, prompt = [], []
        with recorder:
            for run in range(runs):
                term.type(b"Tell me about streaming speech.\r")
                term.expect("\u25b6".encode())  # the status line: speech has begun
                time.sleep(1.5)
                key = time.monotonic()
                term.type(b"\x1b" if run % 2 else b"\r")
                term.expect(rb"stopped after")
                term.expect(rb"> ")
                prompt.append(time.monotonic() - key)
                time.sleep(2.0)  # long enough to see that nothing plays any more
                assert any(peak > LOUD for _, peak in blocks), "nothing was heard"
                assert sum(t > key + 1.5 for t, _ in blocks) > 10, "the recording stalled"
                last_sound = max(t for t, peak in blocks if peak > 0)  # not a single sample
                silence.append(max(0.0, last_sound - key))
                blocks.clear()
        term.type(b"/quit\r")
        term.wait()
        daemon.terminate()
        daemon.wait()

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"

    print(f"{args.engine}: {runs} runs (Enter and Esc alternating), median (max)\n")
    print("| key to silence | key to prompt |")
    print("|---|---|")
    print(f"| {cell(silence)} | {cell(prompt)} |")


if __name__ == "__main__":
    main()
