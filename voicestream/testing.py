"""Loopback stand-ins for testing and benchmarking voicestream (as trio has trio.testing).

- :func:`start`: a loopback server speaking the Anthropic Messages streaming wire
  format, for the real SDK to talk to without a key or a network;
- :func:`start_openai`: the same for OpenAI's Chat Completions (as local servers
  speak it), with the faults and resume behaviours of real ones;
- :func:`start_pulse`: a private PulseAudio daemon with a null sink whose monitor
  records what was played;
- :class:`Terminal`: a program on a pseudo-terminal, typed into as a person would;
- :func:`wait_for`: poll a condition, with a deadline.

The server answers ``POST /v1/messages`` with server-sent events exactly as the API
sends them (``message_start``, ``content_block_start``, ``ping``,
``content_block_delta``, ``content_block_stop``, ``message_delta``,
``message_stop``, ``error``), chunked or close-delimited, and can be told to
fail at a chosen point. Every request is recorded for the test to inspect.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Script:
    """What the next responses do."""

    text: str = "Hello from the loopback model. It streams like the real API."
    piece: int = 4  # characters per text delta
    delay_s: float = 0.0  # pause between deltas
    chunked: bool = True
    status: int = 200  # a non-200 status answers with an error body instead
    error_type: str = "api_error"
    error_message: str = "something went wrong"
    drop_after: int | None = None  # cut the connection after this many deltas
    error_after: int | None = None  # send `event: error` after this many deltas
    stall_after: int | None = None  # go quiet after this many deltas, for stall_s
    stall_s: float = 0.0
    garbage_after: int | None = None  # a `data:` line that is not JSON, after this many deltas
    orphan_after: int | None = None  # a delta for a block that never started, after this many
    stop_reason: str = "end_turn"
    faulty_requests: int = 1_000_000  # the faults above apply to this many requests
    other_blocks: bool = False  # a thinking block and a tool_use block before the text
    tool_call: dict[str, Any] | None = None  # ask for this calculator input, after the text
    tool_name: str = "calculator"
    tool_always: bool = False  # keep asking for the tool, round after round


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    outcome: str = "open"  # "complete", or "closed by client" when it hung up mid-answer
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _Server:
    server: ThreadingHTTPServer

    @property
    def root(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class FakeAnthropic(_Server):
    script: Script = field(default_factory=Script)
    requests: list[Request] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.root


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _events(script: Script, body: dict[str, Any], prefill: str = "") -> list[tuple[str, bytes]]:
    """``(kind, bytes)`` for the whole answer; kind is "delta" for text deltas."""
    message = {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 7,
        },
    }
    out = [
        ("meta", _event("message_start", {"type": "message_start", "message": message})),
        (
            "meta",
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ),
        ("meta", _event("ping", {"type": "ping"})),
    ]
    if script.other_blocks:
        thinking = {"type": "thinking_delta", "thinking": "Let me think about the question."}
        tool = {"type": "input_json_delta", "partial_json": '{"expression": "6*7"}'}
        for index, block, delta in (
            (1, {"type": "thinking", "thinking": "", "signature": ""}, thinking),
            (2, {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {}}, tool),
        ):
            out += [
                (
                    "meta",
                    _event(
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": block},
                    ),
                ),
                (
                    "meta",
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    ),
                ),
                (
                    "meta",
                    _event("content_block_stop", {"type": "content_block_stop", "index": index}),
                ),
            ]
    text = script.text[len(prefill) :]  # a prefilled answer continues where it stops
    for i in range(0, len(text), script.piece):
        delta = {"type": "text_delta", "text": text[i : i + script.piece]}
        out.append(
            (
                "delta",
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
            )
        )
    stop_reason = script.stop_reason
    if script.tool_call is not None and (script.tool_always or not prefill_is_tool_turn(body)):
        stop_reason = "tool_use"
        block = {"type": "tool_use", "id": "toolu_loopback", "name": script.tool_name, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(script.tool_call)}
        out += [
            (
                "meta",
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": 1, "content_block": block},
                ),
            ),
            (
                "meta",
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 1, "delta": delta},
                ),
            ),
            ("meta", _event("content_block_stop", {"type": "content_block_stop", "index": 1})),
        ]
    out += [
        ("meta", _event("content_block_stop", {"type": "content_block_stop", "index": 0})),
        (
            "meta",
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": len(text) // 4},
                },
            ),
        ),
        ("meta", _event("message_stop", {"type": "message_stop"})),
    ]
    return out


def prefill_is_tool_turn(body: dict[str, Any]) -> bool:
    """Whether the request already carries a tool result (the answer goes on)."""
    return any(
        isinstance(m.get("content"), list) and m["role"] == "user" for m in body.get("messages", [])
    )


class _Recording(BaseHTTPRequestHandler):
    """What both loopback servers share: every request recorded (and whether the
    client hung up mid-answer), JSON bodies, chunked writes."""

    protocol_version = "HTTP/1.1"
    fake: FakeAnthropic | FakeOpenAI  # set when the server starts: whose requests to record

    def _answer(self, request: Request, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        request = Request(self.path, dict(self.headers.items()), body)
        self.fake.requests.append(request)
        try:
            self._answer(request, body)
        except (BrokenPipeError, ConnectionResetError):
            request.outcome = "closed by client"

    def _json(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _write(self, data: bytes, chunked: bool = True) -> None:
        if chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)
        self.wfile.flush()


def _serve(handler: type[_Recording], host: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start(host: str = "127.0.0.1") -> FakeAnthropic:
    fake: FakeAnthropic

    class Handler(_Recording):
        def _answer(self, request: Request, body: dict[str, Any]) -> None:
            if self.path.startswith("/v1/messages/count_tokens"):
                counted = len(json.dumps([body.get("system"), body.get("messages")])) // 4
                self._json(200, {"input_tokens": counted})
                return
            script = fake.script
            if len(fake.requests) > script.faulty_requests:
                script = Script(
                    text=script.text, piece=script.piece, delay_s=script.delay_s,
                    other_blocks=script.other_blocks,
                )  # fmt: skip
            messages = body.get("messages", [])
            prefill = ""
            if messages and messages[-1]["role"] == "assistant":
                prefill = messages[-1]["content"]
                if prefill != prefill.rstrip():
                    self._error(
                        400,
                        "invalid_request_error",
                        "final assistant content cannot end with trailing whitespace",
                    )
                    return
                if not script.text.startswith(prefill):
                    self._error(
                        400, "invalid_request_error", "the prefill is not how this answer starts"
                    )
                    return
            last = messages[-1] if messages else {}
            tool_turn = last.get("role") == "user" and isinstance(last.get("content"), list)
            if tool_turn and not script.tool_always:
                # The tool's result came back: the answer goes on with it.
                result = last["content"][0]
                verdict = "an error" if result.get("is_error") else "the result"
                script = Script(text=f"That gives {verdict}: {result['content']}.", piece=4)
            if script.status != 200:
                self._error(script.status, script.error_type, script.error_message)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            if script.chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            deltas = 0
            for kind, data in _events(script, body, prefill):
                if kind == "delta":
                    if deltas == script.drop_after:
                        self.wfile.flush()
                        return  # the connection closes here, mid-answer
                    if deltas == script.stall_after:
                        time.sleep(script.stall_s)  # a read timeout on the client's side
                        return
                    if deltas == script.garbage_after:
                        garbage = b"event: content_block_delta\ndata: {not json\n\n"
                        self._write(garbage, script.chunked)
                    if deltas == script.orphan_after:
                        orphan = {
                            "type": "content_block_delta",
                            "index": 7,
                            "delta": {"type": "text_delta", "text": "lost"},
                        }
                        self._write(_event("content_block_delta", orphan), script.chunked)
                    if deltas == script.error_after:
                        error = {
                            "type": "error",
                            "error": {"type": script.error_type, "message": script.error_message},
                        }
                        self._write(_event("error", error), script.chunked)
                        break
                    deltas += 1
                    time.sleep(script.delay_s)
                self._write(data, script.chunked)
            if script.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            request.outcome = "complete"

        def _error(self, status: int, kind: str, message: str) -> None:
            self._json(status, {"type": "error", "error": {"type": kind, "message": message}})

    fake = Handler.fake = FakeAnthropic(_serve(Handler, host))
    return fake


@dataclass
class OpenAIScript:
    """What the next Chat Completions responses do."""

    text: str = "Hello from the loopback model. It streams like a local server."
    piece: int = 4  # characters per content delta
    delay_s: float = 0.0
    status: int = 200  # a non-200 status answers with an error body instead
    error_message: str = "something went wrong"
    drop_after: int | None = None  # cut the connection after this many deltas
    end_after: int | None = None  # end cleanly after this many: no finish_reason, no [DONE]
    error_after: int | None = None  # an error object in the stream after this many
    stall_after: int | None = None  # go quiet after this many deltas, for stall_s
    stall_s: float = 0.0
    no_done: bool = False  # finish_reason arrives, then the stream ends without [DONE]
    finish_reason: str = "stop"
    faulty_requests: int = 1_000_000  # the faults above apply to this many requests
    resume: str = "honour"  # a text so far: "honour" it, "ignore" it, "repeat" its end
    reasoning: bool = False  # reasoning_content deltas before the text
    tool_call: dict[str, Any] | None = None  # call the calculator with this, after the text
    tool_always: bool = False  # keep calling it, round after round
    # The usage chunk carries an empty choice with no finish_reason (as some servers
    # send it) instead of no choice at all.
    usage_with_choice: bool = False


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-loopback",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "loopback",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def _so_far(messages: list[dict[str, Any]]) -> str:
    """The answer so far that a request carries: a final assistant message (prefill),
    or one followed by a request to continue (instruct)."""
    if messages and messages[-1]["role"] == "assistant":
        return str(messages[-1].get("content") or "")
    asked_to_continue = bool(messages) and "cut off" in str(messages[-1].get("content"))
    if asked_to_continue and len(messages) >= 2 and messages[-2]["role"] == "assistant":
        return str(messages[-2].get("content") or "")
    return ""


@dataclass
class FakeOpenAI(_Server):
    script: OpenAIScript = field(default_factory=OpenAIScript)
    requests: list[Request] = field(default_factory=list)
    # One script per request, in order (the last one for the rest); else ``script``.
    scripts: list[OpenAIScript] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.root + "/v1"


def start_openai(host: str = "127.0.0.1") -> FakeOpenAI:
    """A loopback server speaking OpenAI's Chat Completions streaming format."""
    fake: FakeOpenAI

    class Handler(_Recording):
        def _answer(self, request: Request, body: dict[str, Any]) -> None:
            script = fake.script
            if fake.scripts:
                script = fake.scripts[min(len(fake.requests), len(fake.scripts)) - 1]
            elif len(fake.requests) > script.faulty_requests:
                script = OpenAIScript(
                    text=script.text, piece=script.piece, delay_s=script.delay_s,
                    resume=script.resume, tool_call=script.tool_call,
                )  # fmt: skip
            if script.status != 200:
                self._json(
                    script.status, {"error": {"message": script.error_message, "type": "error"}}
                )
                return
            messages = body.get("messages", [])
            text, so_far = script.text, _so_far(messages)
            tool_result = next((m for m in messages if m["role"] == "tool"), None)
            if tool_result is not None and not script.tool_always:
                text = f"That gives the result: {tool_result['content']}."
            elif so_far and script.resume == "honour" and text.startswith(so_far):
                text = text[len(so_far) :]
            elif so_far and script.resume == "repeat" and text.startswith(so_far):
                start = so_far.rstrip().rfind(" ") + 1  # the last word again
                text = text[start:]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            events = [_chunk({"role": "assistant", "content": ""})]
            if script.reasoning:
                events.append(_chunk({"reasoning_content": "Let me think about it first."}))
            deltas = [
                _chunk({"content": text[i : i + script.piece]})
                for i in range(0, len(text), script.piece)
            ]
            finish = script.finish_reason
            tail = []
            if script.tool_call is not None and (tool_result is None or script.tool_always):
                finish = "tool_calls"
                arguments = json.dumps(script.tool_call)
                first = {"index": 0, "id": "call_1", "type": "function"}
                first["function"] = {"name": "calculator", "arguments": arguments[:5]}
                tail.append(_chunk({"tool_calls": [first]}))
                rest = {"index": 0, "function": {"arguments": arguments[5:]}}
                tail.append(_chunk({"tool_calls": [rest]}))
            tail.append(_chunk({}, finish))
            usage = {"prompt_tokens": 12, "completion_tokens": len(text) // 4, "total_tokens": 0}
            choices = [{"index": 0, "delta": {}, "finish_reason": None}]
            last = {"choices": choices if script.usage_with_choice else [], "usage": usage}
            tail.append(f"data: {json.dumps(last)}\n\n".encode())
            if not script.no_done:
                tail.append(b"data: [DONE]\n\n")
            for data in events:
                self._write(data)
            for n, data in enumerate(deltas):
                if n == script.drop_after:
                    self.wfile.flush()
                    return  # the connection closes mid-answer
                if n == script.end_after:
                    break
                if n == script.stall_after:
                    time.sleep(script.stall_s)
                    return
                if n == script.error_after:
                    error = {"error": {"message": script.error_message, "type": "server_error"}}
                    self._write(f"data: {json.dumps(error)}\n\n".encode())
                    break
                time.sleep(script.delay_s)
                self._write(data)
            else:
                for data in tail:
                    self._write(data)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            request.outcome = "complete"

    fake = Handler.fake = FakeOpenAI(_serve(Handler, host))
    return fake


def clean_env(runtime_dir: Path) -> dict[str, str]:
    """This environment without keys, voicestream settings or a sound server, with its
    own runtime folder (PulseAudio's sockets go there)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "VOICESTREAM_", "PULSE_")) and k != "XDG_RUNTIME_DIR"
    }
    config = runtime_dir / "client.conf"
    config.write_text("autospawn = no\n")
    env.update(XDG_RUNTIME_DIR=str(runtime_dir), PULSE_CLIENTCONFIG=str(config))
    return env


def wait_for(predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def start_pulse(
    runtime: Path, microphone: bool = False
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start a private PulseAudio daemon with a null sink ``vs_null`` (its
    ``vs_null.monitor`` records what plays); return it and the env to reach it.
    With ``microphone``, a second null sink ``vs_mic`` whose monitor is the default
    source: what is played into ``vs_mic`` is what a microphone hears."""
    runtime.chmod(0o700)
    env = clean_env(runtime)
    env["HOME"] = str(runtime)
    mic = ["--load=module-null-sink sink_name=vs_mic rate=16000 channels=1"] if microphone else []
    daemon = subprocess.Popen(
        [
            "pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "-n",
            "--load=module-null-sink sink_name=vs_null rate=22050 channels=1",
            *mic,
            "--load=module-native-protocol-unix",
            "--log-target=stderr",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if time.monotonic() > deadline or daemon.poll() is not None:
            daemon.kill()
            raise RuntimeError("the private PulseAudio daemon did not start")
        time.sleep(0.1)
    if microphone:
        for command in (["set-default-sink", "vs_null"], ["set-default-source", "vs_mic.monitor"]):
            subprocess.run(["pactl", *command], env=env, check=True, capture_output=True)
    return daemon, env


def recordings(env: dict[str, str]) -> int:
    """How many streams record from the PulseAudio that ``env`` reaches."""
    out = subprocess.run(["pactl", "list", "short", "source-outputs"], env=env,
                         capture_output=True, text=True).stdout  # fmt: skip
    return len(out.strip().splitlines())


# Questions our espeak-ng voice asks the microphone (the listening tests and benchmark),
# and what it says to stop an answer.
QUESTIONS = (
    "What is the capital of France?",
    "How does streaming speech work?",
    "Tell me a short story about a cat.",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "Please explain how a jitter buffer works.",
    "What should I cook for dinner tonight?",
    "Which planet is the largest?",
    "Can you recommend a good book?",
    "How far away is the moon?",
)
STOP = "Stop, tell me something else."


def words(text: str) -> list[str]:
    """Lower-case words, for comparing what was said with what was heard."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_errors(reference: str, heard: str) -> int:
    """Substitutions, insertions and deletions from ``reference`` to ``heard`` (by word):
    the numerator of a word error rate."""
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


class Terminal:
    """A program on a pseudo-terminal: type into it, wait for what it prints."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal
            os.chdir(cwd)
            os.execve(argv[0], argv, env | {"TERM": "xterm", "COLUMNS": "100"})
        self.output = b""  # since the last match
        self.everything = b""

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def expect(self, pattern: bytes, timeout: float = 60) -> None:
        """Wait until ``pattern`` appears in the output since the last match."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in {self.output[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                    self.output += data
                    self.everything += data
                except OSError:  # the program ended
                    raise AssertionError(
                        f"ended without {pattern!r}: {self.output[-2000:]!r}"
                    ) from None
        end = re.search(pattern, self.output)
        assert end is not None
        self.output = self.output[end.end() :]

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # the output, until the program has ended
                select.select([self.fd], [], [], 0.1) and os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError("the program did not end")
