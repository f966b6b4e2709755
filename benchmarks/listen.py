"""Listening, measured: ``chat --listen`` on a private PulseAudio, real time.

    .venv/bin/python benchmarks/listen.py [--rounds 10]

Questions are spoken by our own espeak-ng voice into a null sink whose monitor is
the microphone; the answers play into another null sink, recorded (``parec``) to
see when they fall silent. On this machine:

1. **Speech to text**: faster-whisper's tiny.en (int8, 2 threads) on each
   question: real-time factor (time / audio) and word error rate.
2. **End of speech to the model's request**: ``chat --listen --source openai``
   against a loopback Chat Completions server; from the end of the question's
   voiced audio (when ``paplay`` began, plus where its voice ends in the file) to
   the request reaching the server. Target: end_silence_s + 0.3 s.
3. **Barge-in**: while the demo's answer plays, "Stop, tell me something else." is
   spoken; from its first voiced sample to the answer's audio falling silent in the
   speaker's recording. Target: 0.3 s. Both clocks are this process's: each side
   carries PulseAudio's latency (tens of ms), in opposite directions.
4. **Its own echo**: the speaker's monitor looped into the microphone (60 ms)
   while a minute-long answer plays: barge-ins and questions it made (target 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import trio

import voicestream
from voicestream.config import ListenConfig
from voicestream.listen import Transcriber, read_audio
from voicestream.testing import (
    QUESTIONS,
    STOP,
    OpenAIScript,
    recordings,
    start_openai,
    start_pulse,
    wait_for,
    word_errors,
    words,
)

RATE = 22050
QUIET = 300


def voiced(path: Path) -> tuple[float, float]:
    """Where the voice begins and ends in a WAV, seconds."""
    import wave

    with wave.open(str(path)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    loud = np.flatnonzero(np.abs(samples) > QUIET)
    return loud[0] / rate, (loud[-1] + 1) / rate


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


class Chat:
    def __init__(self, env: dict[str, str], folder: Path, *args: str, **more: str) -> None:
        self.transcript = folder / f"chat-{time.monotonic_ns()}.jsonl"
        before = recordings(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voicestream", "chat", "--listen", *args,
             "--transcript", str(self.transcript)],
            env=env | more, cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: recordings(env) > before, 60)  # its microphone is open

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.said.append(line)

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def turns(self) -> list[dict[str, Any]]:
        if not self.transcript.exists():
            return []
        return [json.loads(line) for line in self.transcript.read_text().splitlines()]

    def end(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()


def say_into(env: dict[str, str], path: Path) -> float:
    """Play ``path`` into the microphone; when it began (monotonic)."""
    began = time.monotonic()
    subprocess.run(["paplay", "--device=vs_mic", str(path)], env=env, check=True, timeout=60)
    return began


class Recorder:
    """What the speaker plays (vs_null.monitor), each chunk with when it arrived."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["parec", "--device=vs_null.monitor", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--latency-msec=10", "--raw"],
            env=env, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.chunks: list[tuple[float, np.ndarray]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while data := self.process.stdout.read1(4096):  # type: ignore[attr-defined]
            self.chunks.append((time.monotonic(), np.frombuffer(data[: len(data) // 2 * 2],
                                                                dtype=np.int16)))  # fmt: skip

    def silent_from(self, after: float, quiet_s: float = 0.8) -> float | None:
        """When the sound fell silent (for at least ``quiet_s``: longer than the pauses
        between sentences) after ``after``."""
        wait_for(lambda: bool(self.chunks) and self.chunks[-1][0] > after + quiet_s + 0.5, 30)
        times, samples = [], []
        for arrived, chunk in list(self.chunks):
            times.append(arrived - np.arange(len(chunk))[::-1] / RATE)  # a sample each
            samples.append(chunk)
        if not samples:
            return None
        at, x = np.concatenate(times), np.abs(np.concatenate(samples).astype(np.int32))
        window = int(quiet_s * RATE)
        start = int(np.searchsorted(at, after))
        loud = np.flatnonzero(x[start:] > QUIET) + start
        previous = start
        for i in loud:
            if i - previous > window:
                return float(at[previous])
            previous = i
        return float(at[previous]) if len(x) - previous > window else None

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def transcription(paths: list[Path]) -> tuple[float, float, list[str]]:
    transcriber = await Transcriber.open(ListenConfig())
    took = audio = 0.0
    texts = []
    for path in paths:
        samples = read_audio(path)
        began = time.perf_counter()
        texts.append(await transcriber.transcribe(samples))
        took += time.perf_counter() - began
        audio += len(samples) / 16000
    return took / audio, took, texts


def endpointing(env: dict[str, str], folder: Path, paths: list[Path]) -> list[float]:
    fake = start_openai()
    fake.script = OpenAIScript(text="Sure.", piece=5)
    chat = Chat(env, folder, "--source", "openai", OPENAI_BASE_URL=fake.base_url,
                OPENAI_API_KEY="sk-bench-not-a-key")  # fmt: skip
    waits = []
    try:
        for path in paths:
            asked = len(fake.requests)
            _, end = voiced(path)
            began = time.monotonic()
            playing = subprocess.Popen(["paplay", "--device=vs_mic", str(path)], env=env)
            deadline = began + 30
            while len(fake.requests) <= asked and time.monotonic() < deadline:
                time.sleep(0.002)
            waits.append(time.monotonic() - (began + end))
            playing.wait(timeout=30)
            wait_for(lambda: len(chat.turns()) >= 2 * len(fake.requests), 30)  # answered
    finally:
        chat.end()
        fake.close()
    return waits


def asked(chat: Chat, count: int) -> bool:
    """Whether ``count`` spoken questions have been shown."""
    return sum(line.startswith("> ") for line in chat.said) >= count


def barge_in(env: dict[str, str], folder: Path, stop: Path, rounds: int) -> list[float]:
    recorder = Recorder(env)
    chat = Chat(env, folder, "--source", "demo")
    onset_offset, _ = voiced(stop)
    delays = []
    try:
        chat.type("How does streaming speech work?")
        for done in range(1, rounds + 1):
            time.sleep(4)  # an answer is playing
            began = say_into(env, stop)
            onset = began + onset_offset
            silent = recorder.silent_from(onset - 0.05)
            if silent is not None:
                delays.append(silent - onset)
            wait_for(partial(asked, chat, done), 30)  # what was said became the next question
    finally:
        chat.end()
        recorder.close()
    return delays


def own_echo(env: dict[str, str], folder: Path) -> dict[str, Any]:
    loop = subprocess.run(
        ["pactl", "load-module", "module-loopback", "source=vs_null.monitor", "sink=vs_mic",
         "latency_msec=60"], env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    try:
        chat = Chat(env, folder, "--source", "demo")
        chat.type("How does streaming speech work?")
        wait_for(lambda: len(chat.turns()) >= 2, 120)
        time.sleep(3)
        chat.end()
    finally:
        subprocess.run(["pactl", "unload-module", loop], env=env, check=True)
    turns = chat.turns()
    answered = turns[1]
    return {
        "answer_s": answered["heard_s"],
        "interrupted": answered["interrupted"],
        "questions_made": sum(line.startswith("> ") for line in chat.said),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="listen-bench-"))
    (folder / "pulse").mkdir()
    daemon, env = start_pulse(folder / "pulse", microphone=True)
    try:
        config = voicestream.load_config(voice={"engine": "espeak"})
        paths = []
        for i, question in enumerate(QUESTIONS):
            paths.append(folder / f"q{i}.wav")
            voicestream.say(question, out=paths[-1], config=config)
        stop = folder / "stop.wav"
        voicestream.say(STOP, out=stop, config=config)
        rtf, _, texts = trio.run(transcription, paths)
        errors = sum(word_errors(q, t) for q, t in zip(QUESTIONS, texts, strict=True))
        wer = errors / sum(len(words(q)) for q in QUESTIONS)
        print(f"speech to text: real-time factor {rtf:.3f}; word error rate {wer:.2f} over "
              f"{len(QUESTIONS)} questions", flush=True)  # fmt: skip
        waits = endpointing(env, folder, paths[: args.rounds])
        print(f"end of speech -> model request: p50 {statistics.median(waits):.2f} s, "
              f"p90 {percentile(waits, 0.9):.2f} s, max {max(waits):.2f} s "
              f"(end_silence_s {ListenConfig().end_silence_s})", flush=True)  # fmt: skip
        delays = barge_in(env, folder, stop, min(args.rounds, 6))
        p50, worst = statistics.median(delays) * 1000, max(delays) * 1000
        print(f"barge-in, speech onset -> silence: p50 {p50:.0f} ms, max {worst:.0f} ms "
              f"({len(delays)} rounds)", flush=True)  # fmt: skip
        echo = own_echo(env, folder)
        per_minute = (echo["interrupted"] + echo["questions_made"]) / (echo["answer_s"] / 60)
        print(f"its own echo: {echo['answer_s']:.0f} s of answer looped into the microphone: "
              f"stopped {echo['interrupted']}, questions made {echo['questions_made']} "
              f"({per_minute:.1f} false barge-ins a minute)", flush=True)  # fmt: skip
        print(json.dumps({"rtf": rtf, "wer": wer, "texts": texts, "endpointing_s": waits,
                          "barge_in_s": delays, "echo": echo}, indent=1))  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


if __name__ == "__main__":
    main()
