"""`serve --relay`: answers in Redis, on the real clock, real processes.

    .venv/bin/python benchmarks/relay.py [--only failover|capacity|cost] [--kills 20]
        [--capacity 1,2,3,4,5,6,8] [--piper-threads 2,1]

A private ``redis-server`` on a free port (no persistence), ``voicestream serve``
processes on it, at the shipped settings (lead_s 5, window_s 60, lease_s 1):

1. **Failover**, ``--kills`` times: an answer (the demo source, espeak-ng) is asked
   of process A while a listener reads its events and its audio from process B;
   ~3 s in, A is SIGKILLed. Is the text exact, each piece once, and each chunk
   spoken once? The seam: the longest time with no new audio reaching the
   listener around the kill, and the silence a player that started with the first
   audio would actually have heard (the audio already buffered covers the rest).
2. **Capacity** with Piper: N answers at once on one process, then on
   ``--workers 2``, each followed for 20 s by a client; underruns per answer (the
   server's audio clock running dry), until the first N with one. At the shipped
   two onnxruntime threads per engine, then at one (``--piper-threads``): one
   process speaks one chunk at a time, so whether a second process adds capacity
   depends on whether the first left a core idle.
3. **Redis's cost**: commands and bytes per answer (INFO commandstats and stats
   around one whole answer), and Redis's memory per running answer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import httpx2

from voicestream.chunker import SentenceChunker
from voicestream.sources.demo import demo_answer

RATE = 22050


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL,
        )  # fmt: skip
        while self.ask("PING") != "PONG":
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ask(self, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *command], capture_output=True, text=True
        )
        return done.stdout.strip()

    def info(self, section: str) -> dict[str, str]:
        lines = self.ask("INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def serve(redis: Redis, *flags: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "voicestream", "serve", "--source", "demo", "--port", "0",
         "--relay", redis.url, *flags],
        stderr=subprocess.PIPE, env=os.environ | env,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline().decode()
    if " on http://" not in line:
        raise SystemExit(f"serve did not start: {line}{process.stderr.read().decode()}")
    threading.Thread(target=process.stderr.read, daemon=True).start()  # drain its log
    return process, line.split(" on ")[1].split("/ ")[0]


def end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def bare(text: str) -> str:
    return "".join(text.split())


class Listener:
    """Reads an answer's events and audio from one process, noting when audio came."""

    def __init__(self, url: str, created: dict[str, Any]) -> None:
        self.url, self.created = url, created
        self.events: list[dict[str, Any]] = []
        self.arrivals: list[tuple[float, int]] = []  # (time, bytes)
        self.threads = [
            threading.Thread(target=self._events, daemon=True),
            threading.Thread(target=self._audio, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _events(self) -> None:
        with httpx2.stream("GET", self.url + self.created["events"], timeout=120) as response:
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append({"event": name, "data": json.loads(line[6:])})

    def _audio(self) -> None:
        with httpx2.stream("GET", self.url + self.created["audio"], timeout=120) as response:
            for piece in response.iter_bytes():
                self.arrivals.append((time.monotonic(), len(piece)))

    def text(self) -> str:
        return "".join(e["data"]["text"] for e in self.events if e["event"] == "text")

    def spoken(self) -> str:
        return bare("".join(e["data"]["text"] for e in self.events if e["event"] == "chunk"))

    def seam(self, killed: float) -> tuple[float, float]:
        """The longest wait for new audio after ``killed``, and the silence a player
        that starts with the first audio hears after it (what it had in hand covers
        the rest of the wait)."""
        arrivals = []
        skip = 44  # the WAV header: not audio
        for t, size in self.arrivals:
            taken = min(skip, size)
            skip -= taken
            if size > taken:
                arrivals.append((t, size - taken))
        times = [t for t, _ in arrivals]
        after = [t for t in times if t > killed]
        before = max((t for t in times if t <= killed), default=killed)
        wait = (after[0] - before) if after else float("inf")
        played_until = arrivals[0][0]  # when what has come so far runs out
        silence = 0.0
        for t, size in arrivals:
            if t > played_until:
                silence += t - played_until if t > killed else 0.0
                played_until = t
            played_until += size / 2 / RATE
        return wait, silence


def failover(kills: int) -> dict[str, Any]:
    redis = Redis()
    settings = {"VOICESTREAM_DEMO_SEED": "1"}
    a, a_url = serve(redis, **settings)
    b, b_url = serve(redis, **settings)
    chunker = SentenceChunker()
    expected = bare("".join([*chunker.feed(demo_answer()), *chunker.flush()]))
    exact = 0
    waits: list[float] = []
    silences: list[float] = []
    try:
        for run in range(kills):
            created = httpx2.post(f"{a_url}/v1/answers", json={"prompt": "q"}, timeout=30).json()
            listener = Listener(b_url, created)
            time.sleep(3.0)
            killed = time.monotonic()
            a.send_signal(signal.SIGKILL)
            a.wait()
            deadline = time.monotonic() + 60
            while len(listener.text()) < len(demo_answer()) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(8)  # the audio after the seam
            text_ok = listener.text() == demo_answer()
            spoken = listener.spoken()
            spoken_ok = expected.startswith(spoken) and len(spoken) > 0
            exact += text_ok and spoken_ok
            wait, silence = listener.seam(killed)
            waits.append(wait)
            silences.append(silence)
            print(
                f"kill {run + 1}: text exact {text_ok}, spoken once {spoken_ok}, "
                f"no new audio for {wait:.2f} s, heard silence {silence:.2f} s",
                flush=True,
            )
            httpx2.delete(f"{b_url}/v1/answers/{created['id']}", timeout=10)
            a, a_url = serve(redis, **settings)
    finally:
        end(a)
        end(b)
        redis.close()
    return {
        "kills": kills,
        "exact": exact,
        "wait_p50_s": statistics.median(waits),
        "wait_max_s": max(waits),
        "silence_p50_s": statistics.median(silences),
        "silence_max_s": max(silences),
    }


def capacity(counts: list[int], threads: int) -> list[dict[str, Any]]:
    redis = Redis()
    rows = []
    try:
        for workers in (1, 2):
            process, url = serve(redis, "--engine", "piper", "--workers", str(workers),
                                 "--max-answers", "64",
                                 VOICESTREAM_VOICE_PIPER_THREADS=str(threads))  # fmt: skip
            try:
                for n in counts:
                    underruns = one_load(url, n)
                    rows.append(
                        {"threads": threads, "workers": workers, "answers": n,
                         "underruns": underruns}
                    )  # fmt: skip
                    print(f"piper threads {threads}, workers {workers}, {n} answers: "
                          f"underruns {underruns}", flush=True)  # fmt: skip
                    if sum(underruns):
                        break
            finally:
                end(process)
    finally:
        redis.close()
    return rows


def one_load(url: str, n: int) -> list[int]:
    """N answers at once, each followed for 20 s, then stopped: their underruns."""
    created = [
        httpx2.post(f"{url}/v1/answers", json={"prompt": f"q{i}"}, timeout=30).json()
        for i in range(n)
    ]
    listeners = [Listener(url, c) for c in created]
    time.sleep(20)
    for c in created:
        httpx2.delete(f"{url}/v1/answers/{c['id']}", timeout=10)
    counts = []
    for listener in listeners:
        deadline = time.monotonic() + 30
        while not any(e["event"] in ("done", "error") for e in listener.events):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        done = [e for e in listener.events if e["event"] == "done"]
        counts.append(done[0]["data"]["metrics"].get("underruns", -1) if done else -1)
    time.sleep(2)
    return counts


def cost() -> dict[str, Any]:
    redis = Redis()
    process, url = serve(redis, VOICESTREAM_SERVER_LEAD_S="600", VOICESTREAM_SERVER_WINDOW_S="600",
                         VOICESTREAM_DEMO_TOKENS_PER_S="2000")  # fmt: skip
    try:
        redis.ask("CONFIG", "RESETSTAT")
        created = httpx2.post(f"{url}/v1/answers", json={"prompt": "q"}, timeout=30).json()
        listener = Listener(url, created)
        for thread in listener.threads:
            thread.join(120)
        stats = redis.info("stats")
        commands = redis.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(value.split("calls=")[1].split(",")[0])
            for name, value in commands.items()
        }
        keys = redis.ask("KEYS", f"voicestream:a:{created['id']}*").split()
        memory = sum(int(redis.ask("MEMORY", "USAGE", key) or 0) for key in keys)
        audio_s = sum(e["data"]["audio_s"] for e in listener.events if e["event"] == "chunk")
    finally:
        end(process)
        redis.close()
    return {
        "audio_s": round(audio_s, 1),
        "events": len(listener.events),
        "commands": calls,
        "commands_total": sum(calls.values()),
        "bytes_in": int(stats["total_net_input_bytes"]),
        "bytes_out": int(stats["total_net_output_bytes"]),
        "memory_bytes_finished_answer": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--capacity", default="1,2,3,4,5,6,8")
    parser.add_argument("--only", choices=("failover", "capacity", "cost"))
    parser.add_argument("--piper-threads", default="2,1", help="onnxruntime threads per engine")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.only in (None, "cost"):
        results["cost"] = cost()
        print(json.dumps(results["cost"], indent=1), flush=True)
    if args.only in (None, "failover"):
        results["failover"] = failover(args.kills)
        print(json.dumps(results["failover"], indent=1), flush=True)
    if args.only in (None, "capacity"):
        counts = [int(n) for n in args.capacity.split(",")]
        results["capacity"] = [
            row
            for threads in args.piper_threads.split(",")
            for row in capacity(counts, int(threads))
        ]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
