"""Configuration as data: frozen dataclasses, loaded in layers and validated once.

Precedence, lowest first: built-in defaults, ``./config.toml``, the ``--config``
file, ``VOICESTREAM_<TABLE>_<KEY>`` environment variables, command-line flags.
Every layer is checked against the dataclasses below; a mistake is reported as
one line naming where it came from, the key, and the closest valid key.
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

from .errors import UsageError

SPEECH_SYSTEM_PROMPT = (
    "Your answer will be read aloud by a speech synthesizer as you write it. "
    "Answer in plain spoken sentences: no markdown, no tables, no code blocks, no emoji. "
    "Keep it clear and reasonably short."
)


@dataclass(frozen=True)
class SourceConfig:
    name: str = "auto"  # auto | demo | anthropic | stdin


@dataclass(frozen=True)
class AnthropicConfig:
    model: str = "claude-sonnet-5-5"
    max_tokens: int = 1024
    system: str = SPEECH_SYSTEM_PROMPT
    max_retries: int = 2
    timeout_s: float = 60.0
    max_resumes: int = 3
    resume_backoff_s: float = 0.5
    max_cost_usd: float = 0.0  # 0: no guard
    tools: bool = True  # the calculator
    max_tool_rounds: int = 5
    # "model:input:output", USD per million tokens
    prices: tuple[str, ...] = (
        "claude-sonnet-5-5:3:15",
        "claude-haiku-5-5:1:5",
        "claude-opus-5-5:15:75",
    )


@dataclass(frozen=True)
class DemoConfig:
    first_token_s: float = 0.4
    tokens_per_s: float = 60.0
    seed: int = -1  # -1: a new random seed each run


@dataclass(frozen=True)
class ChunkerConfig:
    first_fragment_words: int = 4
    first_fragment_max_words: int = 12
    min_chars: int = 20
    max_chars: int = 300
    code_block_phrase: str = "Here is a code block, shown on screen."
    drop_emoji: bool = True
    abbreviations: tuple[str, ...] = ()


@dataclass(frozen=True)
class VoiceConfig:
    engine: str = "espeak"  # espeak | silent
    voice: str = ""  # engine default
    rate: int = 180  # words per minute


@dataclass(frozen=True)
class OutputConfig:
    device: str = ""  # PortAudio output device name or index; "" = the default
    latency_s: float = 0.1


@dataclass(frozen=True)
class BuffersConfig:
    policy: str = "adaptive"  # adaptive | fixed | unbounded
    text_floor: int = 32
    text_hard_cap: int = 262144
    stall_budget_s: float = 3.0
    audio_floor_s: float = 2.0
    audio_cap_s: float = 10.0
    audio_block_s: float = 0.5
    fixed_capacity: int = 16


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    anthropic: AnthropicConfig = field(default_factory=AnthropicConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    buffers: BuffersConfig = field(default_factory=BuffersConfig)


Layer = dict[str, dict[str, Any]]

ENV_PREFIX = "VOICESTREAM_"


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


def read_env(environ: Mapping[str, str]) -> Layer:
    names = {f"{ENV_PREFIX}{t}_{k}".upper(): (t, k) for t in _tables() for k in _keys(t)}
    layer: Layer = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name not in names:
            raise UsageError(f"environment: unknown variable {name}{_closest(name, list(names))}")
        table, key = names[name]
        layer.setdefault(table, {})[key] = _parse_env(raw, _keys(table)[key], name)
    return layer


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Layer | None = None,
    cwd: Path | None = None,
) -> Config:
    """Merge all layers into one :class:`Config` (see the module docstring)."""
    layers: list[Layer] = []
    local = (cwd or Path.cwd()) / "config.toml"
    if local.is_file():
        layers.append(read_file(local))
    if config_file is not None:
        layers.append(read_file(config_file))
    layers.append(read_env(os.environ if environ is None else environ))
    layers.append(validate(flags or {}, "command line"))
    merged: Layer = {}
    for layer in layers:
        for table, values in layer.items():
            merged.setdefault(table, {}).update(values)
    defaults = Config()
    return dataclasses.replace(
        defaults,
        **{t: dataclasses.replace(getattr(defaults, t), **v) for t, v in merged.items()},
    )
