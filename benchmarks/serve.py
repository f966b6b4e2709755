"""`voicestream serve` under load: many answers at once, slow and silent clients.

    .venv/bin/python benchmarks/serve.py [--answers 200]

The real server in its own process (demo source at 80 tokens/s, silent engine,
window_s 20), driven over HTTP from one trio process:

1. a client that reads the audio at half real time: the server's buffered audio
   (from /metrics) against the window, and what the client got;
2. a client that asks and never attaches: stopped after grace_s (5 s here)?
3. ``--answers`` clients at once, each asking, following the events and reading
   the audio to the end: all complete? time to first event and to first audio
   byte (p50/p99), the server's peak RSS growth (finished answers keep their
   window of audio for retention_s, so this includes 200 windows).

    .venv/bin/python benchmarks/serve.py --attack [--answers 100]

Under attack: ``--answers`` honest clients as in 3., while beside them 200 bodies
that never finish, 200 clients that ask for an answer's audio and events and
never read, and 100 poisoned POSTs (a lone surrogate in the prompt or the
history, null and numbers where lists belong, 3,000-deep nesting, a path as the
voice) run: how many honest answers complete, their first audio p50/p99, the
server's RSS growth, and whether it is still up. ``PYTHONPATH=<an older
checkout>``, run from outside this one, runs the same against older code (the
"before" row). ``--source openai``: the answers come through the real openai SDK
from a loopback Chat Completions server.

    .venv/bin/python benchmarks/serve.py --talk [--answers 100]

``/v1/talk`` against SSE + ``/audio``, side by side, a fresh server for each: the
same ``--answers`` at once, over one WebSocket each or over an event stream and an
audio stream each: first audio p50/p99, the server's CPU per answer and the bytes on
the wire per answer (loopback's IP bytes, both ways); then barge-in, 20 times each: from
the stop (the ``stop`` frame, or the ``DELETE``) to the last audio that arrived.

    .venv/bin/python benchmarks/serve.py --pool [--counts 1,2,3,4,5,6,8] [--piper-threads 2,1]

Piper answers without an underrun against ``[server] engines_per_voice`` (1, then
the cores): N answers at once in one voice on one process, each followed for 20 s
(``benchmarks/relay.py``'s load), until the first N with an underrun; at the
shipped two onnxruntime threads per synthesis, then at one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx2
import trio

WINDOW_S = 20
RATE = 22050


def start_server(source: str = "demo") -> tuple[subprocess.Popen[bytes], str]:
    """The server in its own process; ``openai``: answers from a loopback Chat
    Completions server in this process (the real SDK encodes the prompt, as a real
    source does), the demo answer at about 80 tokens/s."""
    extra = {}
    if source == "openai":
        from voicestream.sources.demo import demo_answer
        from voicestream.testing import OpenAIScript, start_openai

        fake = start_openai()
        fake.script = OpenAIScript(text=demo_answer(), piece=4, delay_s=1 / 80)
        extra = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-bench-not-a-key"}
    env = (
        os.environ
        | extra
        | {
            "VOICESTREAM_DEMO_TOKENS_PER_S": "80",
            "VOICESTREAM_SERVER_WINDOW_S": str(WINDOW_S),
            "VOICESTREAM_SERVER_GRACE_S": "5",
            "VOICESTREAM_SERVER_MAX_ANSWERS": "1000",
            "VOICESTREAM_SERVER_BUDGET_MB": "2048",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "voicestream", "serve", "--source", source, "--engine", "silent",
         "--port", "0"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline().decode()
    return process, line.split(" on ")[1].split("/ ")[0]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


async def one_answer(client: httpx2.AsyncClient, figures: dict[str, list[Any]]) -> None:
    try:
        await _one_answer(client, figures)
    except (httpx2.HTTPError, KeyError, ValueError):  # the server failed it, or died
        figures["outcomes"].append("failed")


async def _one_answer(client: httpx2.AsyncClient, figures: dict[str, list[Any]]) -> None:
    start = time.perf_counter()
    created = (await client.post("/v1/answers", json={"prompt": "Tell me."})).json()
    figures["created"].append(time.perf_counter() - start)
    last = ""

    async def events() -> None:
        nonlocal last
        async with client.stream("GET", created["events"]) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    if last == "":
                        figures["first_event"].append(time.perf_counter() - start)
                    last = line[7:]

    async def audio() -> None:
        got = 0
        async with client.stream("GET", created["audio"]) as response:
            async for data in response.aiter_bytes():
                if got <= 44 < got + len(data):
                    figures["first_audio"].append(time.perf_counter() - start)
                got += len(data)
        figures["audio_bytes"].append(got)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(events)
        nursery.start_soon(audio)
    figures["outcomes"].append(last)


async def load(url: str, pid: int, answers: int) -> dict[str, Any]:
    figures: dict[str, list[Any]] = {"first_event": [], "first_audio": [], "outcomes": [],
                                     "audio_bytes": [], "created": []}  # fmt: skip
    before = peak = rss(pid)
    limits = httpx2.Limits(max_connections=answers * 3, max_keepalive_connections=answers * 3)
    started = time.perf_counter()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss(pid))
            await trio.sleep(0.25)

    client = httpx2.AsyncClient(base_url=url, timeout=120, limits=limits)
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        async with trio.open_nursery() as clients:
            for _ in range(answers):
                clients.start_soon(one_answer, client, figures)
        nursery.cancel_scope.cancel()
    return figures | {"rss_growth": peak - before, "wall_s": time.perf_counter() - started}


async def slow_reader(url: str) -> dict[str, Any]:
    """Reads the audio at half real time; watches what the server buffers."""
    buffered: list[float] = []
    async with httpx2.AsyncClient(base_url=url, timeout=120) as client:
        created = (await client.post("/v1/answers", json={"prompt": "Slowly."})).json()
        got = 0
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while True:
                    text = (await client.get("/metrics")).text
                    for line in text.splitlines():
                        if line.startswith("voicestream_audio_buffered_bytes"):
                            buffered.append(float(line.split()[1]))
                    await trio.sleep(0.5)

            nursery.start_soon(watch)
            start = time.perf_counter()
            cut = False
            try:
                async with client.stream("GET", created["audio"]) as response:
                    async for data in response.aiter_bytes(chunk_size=4096):
                        got += len(data)
                        ahead = got / (RATE * 2) / 0.5 - (time.perf_counter() - start)
                        if ahead > 0:
                            await trio.sleep(ahead)  # half real time
            except httpx2.RemoteProtocolError:  # the window passed it by: cut off
                cut = True
            nursery.cancel_scope.cancel()
        events = (await client.get(created["events"])).text
    return {
        "read_s": (got - 44) / RATE / 2,
        "max_buffered": max(buffered),
        "cut": cut,
        "done": "event: done" in events,
    }


async def never_attached(url: str) -> dict[str, Any]:
    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        created = (await client.post("/v1/answers", json={"prompt": "Anyone?"})).json()
        start = time.perf_counter()
        while True:
            metrics = (await client.get("/healthz")).json()
            if metrics["answers"] == 0:
                break
            await trio.sleep(0.25)
        stopped_after = time.perf_counter() - start
        events = (await client.get(created["events"])).text
    return {"stopped_after_s": stopped_after, "stopped": '"stop_reason": "stopped"' in events}


POISON = [
    b'{"prompt": "\\ud800"}',
    b'{"prompt": "hi", "history": [{"role": "user", "content": "\\udfff"},'
    b' {"role": "assistant", "content": "ok"}]}',
    b'{"prompt": "hi", "history": null}',
    b'{"prompt": "hi", "history": 7}',
    b'{"prompt": "hi", "history": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"prompt": "hi", "voice": "/etc/shadow"}',
    b"[" * 3000 + b"]" * 3000,
]


async def attack(
    url: str, pid: int, answers: int, slow: int = 200, silent: int = 200, poisoned_posts: int = 100
) -> dict[str, Any]:
    """Honest answers while slow bodies, silent readers and poisoned POSTs run beside."""
    host, port = url.split("//")[1].rsplit(":", 1)
    held: list[trio.SocketStream] = []
    poisoned: list[int] = []

    async def slow_body() -> None:
        with trio.move_on_after(120):
            stream = await trio.open_tcp_stream(host, int(port))
            held.append(stream)
            await stream.send_all(
                b"POST /v1/answers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b'application/json\r\nContent-Length: 1000\r\n\r\n{"prompt": "'
            )
            await trio.sleep_forever()  # the rest never comes

    async def silent_reader(path: str) -> None:
        with trio.move_on_after(120):
            stream = await trio.open_tcp_stream(host, int(port))
            held.append(stream)
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await trio.sleep_forever()  # never reads a byte

    async def poison(client: httpx2.AsyncClient, body: bytes) -> None:
        try:
            response = await client.post(
                "/v1/answers", content=body, headers={"Content-Type": "application/json"}
            )
            poisoned.append(response.status_code)
        except httpx2.HTTPError:
            poisoned.append(0)  # the server was gone

    async with httpx2.AsyncClient(base_url=url, timeout=120) as client:
        bait = (await client.post("/v1/answers", json={"prompt": "Bait."})).json()
        async with trio.open_nursery() as nursery:
            for _ in range(slow):
                nursery.start_soon(slow_body)
            for i in range(silent):
                nursery.start_soon(silent_reader, bait["audio" if i % 2 else "events"])
            for i in range(poisoned_posts):
                nursery.start_soon(poison, client, POISON[i % len(POISON)])
            figures = await load(url, pid, answers)
            nursery.cancel_scope.cancel()
        for stream in held:
            await stream.aclose()
        try:
            alive = (await client.get("/healthz")).status_code == 200
        except httpx2.HTTPError:
            alive = False
    return figures | {"poisoned": poisoned, "alive": alive}


def under_attack(answers: int, slow: int, silent: int, poisoned: int, source: str) -> None:
    process, url = start_server(source)
    try:
        before = cpu_s(process.pid), time.process_time()
        figures = trio.run(attack, url, process.pid, answers, slow, silent, poisoned)
        server_cpu, client_cpu = cpu_s(process.pid) - before[0], time.process_time() - before[1]
    finally:
        process.terminate()
        process.wait(timeout=15)
    done = sum(outcome == "done" for outcome in figures["outcomes"])
    fa = figures["first_audio"] or [float("nan")]
    codes = sorted(set(figures["poisoned"]))
    print(f"{answers} honest answers ({source} source) beside {slow} slow bodies, {silent} "
          f"silent readers and {poisoned} poisoned POSTs ({os.cpu_count()} cores):\n")  # fmt: skip
    print("| honest completed | first audio p50 / p99 | server RSS growth | CPU: server, "
          "clients | poisoned POSTs got | server up after |")  # fmt: skip
    print("|---:|---:|---:|---:|---|---|")
    print(
        f"| {done} of {answers} | {statistics.median(fa):.2f} / {percentile(fa, 0.99):.2f} s | "
        f"{figures['rss_growth'] / 2**20:.0f} MB | {server_cpu:.1f} s, {client_cpu:.1f} s of "
        f"{figures['wall_s']:.0f} s | {', '.join(map(str, codes))} | "
        f"{'yes' if figures['alive'] else 'NO'} |"
    )


def on_the_wire() -> int:
    """IP bytes sent on this machine so far (``IpExt OutOctets``): on loopback, every
    byte between the clients and the server, both ways, headers included."""
    with open("/proc/net/netstat") as f:
        names, values = [line.split() for line in f if line.startswith("IpExt")]
    return int(values[names.index("OutOctets")])


async def one_talk(port: int, figures: dict[str, list[Any]]) -> None:
    from trio_websocket import open_websocket_url

    start = time.perf_counter()
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/v1/talk") as ws:
            await ws.send_message(json.dumps({"type": "ask", "prompt": "Tell me."}))
            first = True
            while True:
                message = await ws.get_message()
                if isinstance(message, bytes):
                    if first:
                        figures["first_audio"].append(time.perf_counter() - start)
                        first = False
                    continue
                frame = json.loads(message)
                if frame["type"] in ("done", "error"):
                    figures["outcomes"].append(frame["type"])
                    return
    except Exception:  # the socket failed
        figures["outcomes"].append("failed")


async def talk_load(url: str, pid: int, answers: int, talk: bool) -> dict[str, Any]:
    figures: dict[str, list[Any]] = {"first_event": [], "first_audio": [], "outcomes": [],
                                     "audio_bytes": [], "created": []}  # fmt: skip
    cpu, wire = cpu_s(pid), on_the_wire()
    port = int(url.rsplit(":", 1)[1])
    limits = httpx2.Limits(max_connections=answers * 3, max_keepalive_connections=answers * 3)
    client = httpx2.AsyncClient(base_url=url, timeout=120, limits=limits)
    async with client, trio.open_nursery() as clients:
        for _ in range(answers):
            if talk:
                clients.start_soon(one_talk, port, figures)
            else:
                clients.start_soon(one_answer, client, figures)
    return figures | {"cpu_s": cpu_s(pid) - cpu, "wire": on_the_wire() - wire}


async def barge_in(url: str, talk: bool, runs: int = 20) -> list[float]:
    """From the stop to the last audio that arrived, ``runs`` times."""
    from trio_websocket import open_websocket_url

    port = int(url.rsplit(":", 1)[1])
    out = []
    for _ in range(runs):
        last = stopped = 0.0
        if talk:
            async with open_websocket_url(f"ws://127.0.0.1:{port}/v1/talk") as ws:
                await ws.send_message(json.dumps({"type": "ask", "prompt": "Tell me."}))
                audio = 0
                while True:
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        last = time.perf_counter()
                        audio += len(message)
                        if not stopped and audio > RATE * 2:  # a second of it
                            stopped = time.perf_counter()
                            await ws.send_message(json.dumps({"type": "stop"}))
                    elif json.loads(message)["type"] in ("done", "error"):
                        break
        else:
            async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
                created = (await client.post("/v1/answers", json={"prompt": "Tell me."})).json()
                audio = 0
                async with client.stream("GET", created["audio"]) as response:
                    async for data in response.aiter_bytes():
                        last = time.perf_counter()
                        audio += len(data)
                        if not stopped and audio > 44 + RATE * 2:
                            stopped = time.perf_counter()
                            await client.delete(f"/v1/answers/{created['id']}")
        out.append(max(0.0, last - stopped))
    return out


def talk_against_sse(answers: int) -> None:
    rows = []
    for talk in (False, True):
        process, url = start_server()
        try:
            figures = trio.run(talk_load, url, process.pid, answers, talk)
            stops = trio.run(barge_in, url, talk)
        finally:
            process.terminate()
            process.wait(timeout=15)
        fa = figures["first_audio"]
        rows.append((
            "/v1/talk" if talk else "SSE + /audio",
            sum(o == "done" for o in figures["outcomes"]),
            statistics.median(fa), percentile(fa, 0.99),
            figures["cpu_s"] / answers, figures["wire"] / answers / 1024,
            statistics.median(stops), max(stops),
        ))  # fmt: skip
    print(f"{answers} answers at once (demo at 80 tokens/s, silent engine), {os.cpu_count()} "
          "cores; barge-in: 20 answers stopped after a second of audio had arrived\n")  # fmt: skip
    print("| over | completed | first audio p50 / p99 | server CPU per answer | bytes on the "
          "wire per answer | stop to last audio p50 / max |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, done, p50, p99, cpu, kb, s50, smax in rows:
        print(f"| {name} | {done} of {answers} | {p50:.2f} / {p99:.2f} s | {cpu * 1000:.0f} ms "
              f"| {kb:,.0f} KB | {s50 * 1000:.0f} / {smax * 1000:.0f} ms |")  # fmt: skip


def pool_capacity(counts: list[int], threads: int) -> list[dict[str, Any]]:
    """Answers without an underrun at each pool size (one process, Piper)."""
    from relay import one_load

    rows = []
    for pool in sorted({1, os.cpu_count() or 1}):
        env = os.environ | {"VOICESTREAM_VOICE_PIPER_THREADS": str(threads),
                            "VOICESTREAM_SERVER_ENGINES_PER_VOICE": str(pool)}  # fmt: skip
        process = subprocess.Popen(
            [sys.executable, "-m", "voicestream", "serve", "--source", "demo", "--engine",
             "piper", "--port", "0", "--max-answers", "64"],
            stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        url = line.split(" on ")[1].split("/ ")[0]
        try:
            for n in counts:
                underruns = one_load(url, n)
                rows.append({"threads": threads, "pool": pool, "answers": n,
                             "underruns": underruns})  # fmt: skip
                print(f"piper threads {threads}, pool {pool}, {n} answers: underruns "
                      f"{underruns}", flush=True)  # fmt: skip
                if sum(underruns):
                    break
        finally:
            process.terminate()
            process.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--attack", action="store_true", help="honest answers under attack")
    parser.add_argument("--slow", type=int, default=200, help="with --attack: slow bodies")
    parser.add_argument("--silent", type=int, default=200, help="with --attack: silent readers")
    parser.add_argument("--poisoned", type=int, default=100, help="with --attack: poisoned POSTs")
    parser.add_argument("--source", choices=["demo", "openai"], default="demo")
    parser.add_argument("--talk", action="store_true", help="/v1/talk against SSE + /audio")
    parser.add_argument("--pool", action="store_true", help="Piper answers vs pool size")
    parser.add_argument("--counts", default="1,2,3,4,5,6,8", help="with --pool")
    parser.add_argument("--piper-threads", default="2,1", help="with --pool")
    args = parser.parse_args()
    if args.pool:
        counts = [int(n) for n in args.counts.split(",")]
        rows = [r for t in args.piper_threads.split(",") for r in pool_capacity(counts, int(t))]
        print(json.dumps(rows, indent=1))
        return
    if args.talk:
        talk_against_sse(args.answers)
        return
    if args.attack:
        under_attack(args.answers, args.slow, args.silent, args.poisoned, args.source)
        return
    process, url = start_server()
    try:
        slow = trio.run(slow_reader, url)  # first, alone: /metrics counts all answers
        alone = trio.run(never_attached, url)
        figures = trio.run(load, url, process.pid, args.answers)
    finally:
        process.terminate()
        process.wait(timeout=15)
    done = sum(outcome == "done" for outcome in figures["outcomes"])
    print(f"{args.answers} answers at once (demo at 80 tokens/s, silent engine, "
          f"window {WINDOW_S} s), {os.cpu_count()} cores:\n")  # fmt: skip
    print("| completed | created (201) p50 / p99 | first event p50 / p99 | first audio byte "
          "p50 / p99 | server RSS growth | wall |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    fe, fa, cr = figures["first_event"], figures["first_audio"], figures["created"]
    print(
        f"| {done} of {args.answers} | {statistics.median(cr):.2f} / {percentile(cr, 0.99):.2f} s"
        f" | {statistics.median(fe):.2f} / {percentile(fe, 0.99):.2f} s"
        f" | {statistics.median(fa):.2f} / {percentile(fa, 0.99):.2f} s | "
        f"{figures['rss_growth'] / 2**20:.0f} MB | {figures['wall_s']:.0f} s |"
    )
    window = WINDOW_S * RATE * 2
    print(
        f"\nA client reading the audio at half real time: the server held at most "
        f"{slow['max_buffered'] / 1024:.0f} KB of audio (window: {window / 1024:.0f} KB); the "
        f"client read {slow['read_s']:.1f} s of audio; "
        f"{'cut off when the window passed it' if slow['cut'] else 'not cut off'}; "
        f"the answer {'completed' if slow['done'] else 'did not complete'}."
    )
    print(
        f"A client that asked and never attached: the answer was "
        f"{'stopped' if alone['stopped'] else 'NOT stopped'} "
        f"{alone['stopped_after_s']:.1f} s later (grace_s 5)."
    )


if __name__ == "__main__":
    main()
