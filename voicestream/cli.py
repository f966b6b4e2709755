"""The ``voicestream`` command: ``say``, ``chat``, ``serve``, ``hear``, ``voices``,
``devices``, ``bench``.

Exit codes: 0 done, 1 failed while running, 2 bad usage or configuration,
130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (voicestream.stopping). Errors are one
line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import io
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn, TextIO

import trio

from . import config as configuration
from . import stopping
from .errors import SinkError, UsageError, VoicestreamError, redact, root_cause
from .pipeline import Metrics
from .runner import Answer
from .sinks import Sink, open_output, wav
from .sinks.wav import open_regular
from .sources import SOURCES, check_source, open_source, preload, resolve_name
from .synthesizers import ENGINES, open_synthesizer
from .terminal import SafeOutput


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake said in one line by the command it belongs to, and a
    suggestion where one is close (argparse prints the whole usage, and a
    subcommand's unknown flag as the top-level command's)."""

    commands: dict[str, _Parser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}{self._suggestion(message)}\n")

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            wanted, offered = choice[1], re.findall(r"'([^']*)'", choice[2])
        else:
            unknown = re.search(r"unrecognized arguments: (\S+)", message)
            if unknown is None or not unknown[1].startswith("-"):
                return ""
            wanted = unknown[1].split("=")[0]
            offered = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        match = difflib.get_close_matches(wanted, offered, n=1)
        return f" (did you mean '{match[0]}'?)" if match else ""

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # said by the command whose flags they were meant for
            owner = getattr(self, "commands", {}).get(getattr(parsed, "command", None), self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _parser() -> _Parser:
    parser = _Parser(
        prog="voicestream", description="Speak a language model's answer while it is generated."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    common = _Parser(add_help=False)
    common.add_argument("--source", choices=SOURCES, help="where the text comes from")
    common.add_argument("--config", type=Path, metavar="FILE", help="a config file (TOML)")
    common.add_argument("--voice", metavar="NAME", help="a voice from 'voicestream voices'")
    common.add_argument("--rate", type=int, metavar="WPM", help="speech rate, words per minute")
    common.add_argument("--engine", choices=ENGINES, help="speech engine")
    common.add_argument("--model", help="the model (of the anthropic or openai source)")
    common.add_argument("--max-tokens", type=int, metavar="N", help="the longest answer, in tokens")
    common.add_argument("--system", metavar="TEXT", help="the system prompt")
    common.add_argument("--max-cost", type=float, metavar="USD", help="refuse a costlier request")
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    say = commands.add_parser("say", parents=[common], help="speak one answer")
    say.add_argument("prompt", nargs="?", default="", help="the question; '-' reads stdin")
    output = say.add_mutually_exclusive_group()  # --null discards: nothing to write or play
    output.add_argument(
        "--out", type=Path, metavar="FILE.wav", help="write a WAV file, no playback"
    )
    say.add_argument("--play", action="store_true", help="with --out: play it as well")
    output.add_argument("--null", action="store_true", help="discard the audio (captions only)")
    say.add_argument("--metrics", type=Path, metavar="FILE.json", help="write metrics at the end")

    chat = commands.add_parser(
        "chat", parents=[common], help="a spoken conversation, with barge-in"
    )
    chat.add_argument(
        "--out", type=Path, metavar="DIR", help="write each answer as a numbered WAV in DIR"
    )
    chat.add_argument(
        "--transcript", type=Path, metavar="FILE", help="append the conversation as JSON lines"
    )
    chat.add_argument(
        "--listen", action="store_true",
        help="also take spoken questions, and stop an answer by speaking (the listen extra)",
    )  # fmt: skip

    serve = commands.add_parser(
        "serve", parents=[common], help="speak answers to browsers and HTTP clients"
    )
    serve.add_argument("--host", help="the address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, help="the port (8000; 0: any free port)")
    serve.add_argument("--max-answers", type=int, metavar="N", help="answers at once (16)")
    serve.add_argument(
        "--token-file", type=Path, metavar="FILE", help="the bearer token (or VOICESTREAM_TOKEN)"
    )
    serve.add_argument(
        "--allow-origin", action="append", metavar="ORIGIN",
        help="a web page's origin that may use the server (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--allow-host", action="append", metavar="NAME",
        help="a host name to answer for besides loopback (repeatable; '*': any)",
    )  # fmt: skip
    serve.add_argument(
        "--log-level", choices=configuration.LOG_LEVELS, help="what the log shows (warning)"
    )
    serve.add_argument(
        "--access-log", nargs="?", const="-", metavar="FILE", help="log each request (stderr)"
    )
    serve.add_argument(
        "--relay", metavar="URL", help="keep answers in Redis, shared by processes (redis://...)"
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="server processes on the one port (1)"
    )

    bench = commands.add_parser(
        "bench", help="compare buffer policies in virtual time (--real: sessions at scale)"
    )
    bench.add_argument("--out", type=Path, metavar="DIR", help="where the JSON and plots go")
    bench.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N per scenario (10)")
    bench.add_argument(
        "--real", action="store_true", help="N concurrent answers on the real clock instead"
    )
    bench.add_argument(
        "--sessions", metavar="N,N,...", help="with --real: session counts (100,300,1000)"
    )
    bench.add_argument(
        "--written-audio", action="store_true", help="with --real: samples written, as a voice's"
    )
    bench.add_argument(
        "--json", type=Path, metavar="FILE", help="with --real: the figures as JSON too"
    )

    voices = commands.add_parser("voices", help="list the voices the engine offers")
    voices.add_argument("--engine", choices=ENGINES, help="whose voices (the configured engine)")
    voices.add_argument("--config", type=Path, metavar="FILE", help="a config file (TOML)")
    devices = commands.add_parser("devices", help="list the audio devices PortAudio sees")
    devices.add_argument("--input", action="store_true", help="input devices (microphones)")

    hear = commands.add_parser(
        "hear", help="print what is said in a recording, or into the microphone"
    )
    hear.add_argument("file", nargs="?", type=Path, help="a recording (WAV, FLAC, MP3, ...)")
    hear.add_argument(
        "--seconds", type=float, metavar="N", help="listen to the microphone for N seconds"
    )
    hear.add_argument("--config", type=Path, metavar="FILE", help="a config file (TOML)")
    hear.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.commands = dict(commands.choices)
    return parser


def _flags(args: argparse.Namespace) -> configuration.Layer:
    flags: configuration.Layer = {}
    for table, key, value in (
        ("source", "name", "stdin" if getattr(args, "prompt", "") == "-" else args.source),
        ("voice", "voice", args.voice),
        ("voice", "rate", args.rate),
        ("voice", "engine", args.engine),
        # The model flags go to both API sources' tables; the one answering uses them.
        ("anthropic", "model", args.model),
        ("anthropic", "max_tokens", args.max_tokens),
        ("anthropic", "system", args.system),
        ("anthropic", "max_cost_usd", args.max_cost),
        ("openai", "model", args.model),
        ("openai", "max_tokens", args.max_tokens),
        ("openai", "system", args.system),
        ("server", "host", getattr(args, "host", None)),
        ("server", "port", getattr(args, "port", None)),
        ("server", "max_answers", getattr(args, "max_answers", None)),
        ("server", "allowed_origins", getattr(args, "allow_origin", None)),
        ("server", "allowed_hosts", getattr(args, "allow_host", None)),
        ("server", "log_level", getattr(args, "log_level", None)),
        ("server", "access_log", getattr(args, "access_log", None)),
        ("server", "relay", getattr(args, "relay", None)),
        ("server", "workers", getattr(args, "workers", None)),
    ):
        if value is not None:
            flags.setdefault(table, {})[key] = value
    return flags


def _check_writable(path: Path, what: str) -> None:
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: the directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {what} {path}: permission denied")


def _check_stdin() -> None:
    """Standard input must be open to be read (``<&-`` closes it)."""
    try:
        if sys.stdin is None:
            raise OSError
        os.fstat(0)
    except OSError:
        raise UsageError(
            "standard input is closed: pipe the text in, or give the PROMPT as an argument"
        ) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


class MetricsFile:
    """``--metrics``: opened before any request (a directory, a device or an unwritable
    path is a usage error then, not after the answer), written once at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = open_regular(path, "metrics")

    def write(self, figures: dict[str, Any]) -> None:
        data = (json.dumps(figures, indent=2) + "\n").encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as e:
            raise SinkError(f"{wav.describe(e)} writing the metrics {self.path}") from None
        finally:
            os.close(self._fd)


async def _say(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    stopped: list[int] = []
    running: list[Answer] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope, stopped, running)
        code = await _say_one(args, stdout, stderr, running)
        nursery.cancel_scope.cancel()
    return stopping.exit_code(stopped[0]) if stopped else code


async def _watch_signals(
    getting_ready: trio.CancelScope, stopped: list[int], running: list[Answer]
) -> None:
    """Ctrl-C, SIGTERM and SIGHUP stop the answer (its audio and metrics are kept);
    before it starts, they stop the getting ready."""
    with trio.open_signal_receiver(*stopping.SIGNALS) as signals:
        async for signum in signals:
            stopped.append(signum)
            if running:
                running[0].stop()
            else:
                getting_ready.cancel()


async def _say_one(
    args: argparse.Namespace, stdout: TextIO, stderr: TextIO, running: list[Answer]
) -> int:
    cfg = configuration.load(args.config, os.environ, _flags(args))
    name = resolve_name(cfg.source.name, os.environ)
    prompt = "" if args.prompt == "-" else args.prompt
    if name == "stdin" and prompt:
        raise UsageError(
            "--source stdin speaks standard input: give no PROMPT, or leave out --source"
        )
    if name == "stdin":
        _check_stdin()
        if os.isatty(0):  # a person at a terminal: say what is awaited, and how to end it
            print("voicestream: reading standard input; end with Ctrl-D", file=stderr, flush=True)
    check_source(name, cfg, prompt)
    if name == "openai" and args.max_cost is not None:
        raise UsageError(
            "--max-cost needs the anthropic source, which counts the tokens before generating"
        )
    if args.out is not None and args.metrics is not None and _same_file(args.out, args.metrics):
        raise UsageError(f"--out and --metrics name the same file {args.out}: give two files")
    if cfg.source.name == "auto" and name == "demo":
        print(
            "voicestream: ANTHROPIC_API_KEY is not set (nor OPENAI_BASE_URL or OPENAI_API_KEY); "
            "speaking the offline demo answer",
            file=stderr,
        )
    metrics_file = MetricsFile(args.metrics) if args.metrics is not None else None
    sink: Sink | None = None
    try:
        async with trio.open_nursery() as loading:
            if name == "anthropic":
                loading.start_soon(preload, name)  # the SDK loads while the rest opens
            synthesizer = await open_synthesizer(cfg.voice)
            play = not args.null and (args.out is None or args.play)
            out = None if args.null else args.out
            try:
                sink = open_output(synthesizer.sample_rate, cfg.output, out, play)
            except UsageError as e:
                if out is None or not play or "no audio output device" not in str(e):
                    raise
                raise UsageError(
                    f"no audio output device found to --play on; drop --play to write {out} only"
                ) from e
        from . import BEGUN

        answer = Answer(
            open_source(name, cfg, prompt), synthesizer, sink, cfg, captions=SafeOutput(stdout),
            begun=BEGUN,
        )  # fmt: skip
        running.append(answer)
        result = await answer.run()
    finally:
        if sink is not None:
            sink.close()
        if metrics_file is not None:
            metrics_file.write((running[0].metrics if running else Metrics()).as_dict())
    for notice in result.notices:
        print(f"voicestream: {redact(notice)}", file=stderr)
    if result.error is not None:
        raise result.error
    if out is not None:  # where the audio went
        print(f"voicestream: wrote {out} ({result.metrics.audio_s:.1f} s of speech)", file=stderr)
    return 0


async def _serve(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from . import server

    cfg = configuration.load(args.config, os.environ, _flags(args))
    name = resolve_name(cfg.source.name, os.environ)
    token = server.read_token(os.environ, args.token_file)
    server.check(cfg, name, token, os.environ)
    worker = server.LISTEN_FD in os.environ  # one of serve --workers N's processes
    if cfg.server.workers > 1 and not worker:
        from .relay import open_relay
        from .workers import supervise

        async with open_relay(cfg.server):  # Redis is there, or one line and exit 2
            pass
        return await supervise(cfg.server, sys.argv[1:], name, stderr)
    if name == "anthropic":
        await preload(name)

    async with trio.open_nursery() as nursery:
        live, port = await nursery.start(server.serve, cfg, name, token)
        if not worker:
            print(
                f"voicestream: serving {name} answers on http://{cfg.server.host}:{port}/ "
                f"(Ctrl-C or SIGTERM stops)",
                file=stderr,
                flush=True,
            )
    exit_code: int = live.exit_code
    return exit_code


async def _chat(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .chat import Chat
    from .terminal import Keyboard

    cfg = configuration.load(args.config, os.environ, _flags(args))
    name = resolve_name(cfg.source.name, os.environ)
    if name == "stdin":
        raise UsageError("chat reads questions from stdin; choose --source anthropic or demo")
    _check_stdin()
    check_source(name, cfg, "?")  # the source's settings (the key) before the first question
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out} is a file; chat writes a WAV per answer into a DIR")
        _check_writable(args.out / "answer.wav" if args.out.is_dir() else args.out, "into")
        args.out.mkdir(exist_ok=True)
    if args.transcript is not None:
        _check_writable(args.transcript, "the transcript")
    listener = None
    if args.listen:
        from .listen import Listener

        listener = await Listener.open(cfg.listen)  # the microphone and the model, or exit 2
    chat = Chat(cfg, name, Keyboard(), stdout, stderr, args.out, args.transcript, listener)
    return await chat.run()


def _voices(args: argparse.Namespace, stdout: TextIO) -> int:
    flags: configuration.Layer = {"voice": {"engine": args.engine}} if args.engine else {}
    cfg = configuration.load(args.config, os.environ, flags)
    if cfg.voice.engine == "piper":
        from .synthesizers.piper import voice_paths

        directory = Path(cfg.voice.piper_dir).expanduser() if cfg.voice.piper_dir else None
        print("VOICE (--voice)", file=stdout)
        for i, path in enumerate(voice_paths(directory)):
            print(f"{path}{'  (bundled, the default)' if i == 0 else ''}", file=stdout)
        return 0
    if cfg.voice.engine == "silent":
        print("silent  (one voice: silence as long as speech would take)", file=stdout)
        return 0
    from .synthesizers.espeak import default_voice, list_voices, resolve_voice

    default = resolve_voice(cfg.voice.voice) if cfg.voice.voice else default_voice()
    print(f"{'VOICE (--voice)':<24} {'NAME':<32} LANGUAGE", file=stdout)
    for vid, name, languages in list_voices():
        mark = "  (the default)" if vid == default else ""
        print(f"{vid:<24} {name:<32} {languages}{mark}", file=stdout)
    return 0


def _listed(command: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    """A listing read by a pipe that closes early (``| head``) ends quietly."""
    try:
        code: int = command(args, stdout)
        stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stdout.fileno())  # nothing more reaches the closed pipe
        return 0
    return code


def _bench(args: argparse.Namespace) -> int:
    """The buffer-policy benchmark (voicestream.bench; plots need the bench extra),
    or with ``--real`` sessions at scale on the real clock (voicestream.bench_real)."""
    if args.real:
        from .bench_real import main as real

        argv = ["--sessions", args.sessions] if args.sessions else []
        argv += ["--json", str(args.json)] if args.json else []
        return real(argv + (["--written-audio"] if args.written_audio else []))
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            "the benchmark's plots need matplotlib: pip install 'voicestream[bench]' "
            "(in a checkout: .venv/bin/pip install -e '.[bench]')"
        )
    from .bench import main as bench

    argv = ["--out", str(args.out)] if args.out else []
    return bench(argv + (["--seeds", str(args.seeds)] if args.seeds else []))


async def _hear(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """``hear FILE`` or ``hear --seconds N``: each utterance's text on a line of its
    own; nothing for silence."""
    from . import listen
    from .listen.speech import FRAME_S

    if (args.file is None) == (args.seconds is None):
        raise UsageError("hear takes a recording or --seconds N (the microphone), one of them")
    if args.seconds is not None and not 0 < args.seconds <= 3600:
        raise UsageError("--seconds must be above 0 and at most 3600")
    cfg = configuration.load(args.config, os.environ, {})
    detector = listen.Detector()
    if args.file is not None:
        frames = listen.frames_of(listen.read_audio(args.file))
    else:
        microphone = listen.Microphone(listen.check_input(cfg.listen.device))
        frames = _first(microphone.frames(), round(args.seconds / FRAME_S))
    transcriber = await listen.Transcriber.open(cfg.listen)
    async with listen.utterances(frames, detector, transcriber, cfg.listen) as events:
        async for event in events:
            if isinstance(event, listen.Heard):
                print(event.text, file=stdout, flush=True)
    return 0


async def _first(frames: Any, count: int) -> Any:
    """The first ``count`` of ``frames``."""
    async with contextlib.aclosing(frames):
        n = 0
        async for frame in frames:
            yield frame
            n += 1
            if n >= count:
                return


def _devices(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .sinks.speaker import list_devices

    kind = "input" if args.input else "output"
    devices = list_devices(kind)
    if not devices:
        print(f"voicestream: PortAudio sees no audio {kind} device", file=stderr)
    for index, name, channels in devices:
        print(f"{index:>3}  {name}  ({channels} channels)", file=stdout)
    return 0


def run(
    argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command line; return the exit code."""
    if stderr is None and isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(errors="backslashreplace")  # a message never fails to print
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # "voicestream" alone: what it can do
        parser.print_help(stdout)
        return 0
    if args.command == "say" and args.null and args.play:  # as argparse says --out's
        parser.commands["say"].error("argument --play: not allowed with argument --null")
    try:
        if args.command == "voices":
            return _listed(_voices, args, stdout)
        if args.command == "devices":
            return _devices(args, stdout, stderr)
        if args.command == "bench":
            return _bench(args)
        try:
            stopping.check()  # a stop signal during start-up that Python swallowed
            command = {"chat": _chat, "serve": _serve, "hear": _hear}.get(args.command, _say)
            result: int = trio.run(command, args, stdout, stderr)
        except BaseExceptionGroup as group:
            raise root_cause(group) from group
        return result
    except VoicestreamError as e:
        if args.debug:
            traceback.print_exc(file=stderr)
        print(f"voicestream: {redact(str(e))}", file=stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return stopping.exit_code()
    except Exception as e:
        if stopping.interrupted(e):
            return stopping.exit_code()
        if args.debug:
            raise
        print(
            f"voicestream: unexpected error: {type(e).__name__}: {redact(str(e))} (run with "
            "--debug for the traceback)",
            file=stderr,
        )
        return 1
