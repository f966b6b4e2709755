"""Configuration: documented defaults, precedence, and one-line errors."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from voicestream import config
from voicestream.errors import UsageError

REPO = Path(__file__).parent.parent


def test_config_toml_documents_every_key_with_its_default() -> None:
    documented = config.read_file(REPO / "config.toml")
    assert sorted(f"{t}.{k}" for t in documented for k in documented[t]) == sorted(
        config.all_keys()
    )
    defaults = config.Config()
    for table, values in documented.items():
        for key, value in values.items():
            assert getattr(getattr(defaults, table), key) == value, f"{table}.{key}"
    text = (REPO / "config.toml").read_text()
    for key in config.all_keys():  # a comment explains each table
        table = key.split(".")[0]
        assert re.search(rf"\[{table}\]\n#", text), f"[{table}] has no comment"


def test_precedence_flags_env_file_local_defaults(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[voice]\nrate = 150\nvoice = 'local'\nengine = 'silent'\n"
    )
    extra = tmp_path / "extra.toml"
    extra.write_text("[voice]\nrate = 160\nvoice = 'file'\n")
    env = {"VOICESTREAM_VOICE_RATE": "170", "UNRELATED": "x"}
    loaded = config.load(extra, env, {"voice": {"rate": 190}}, cwd=tmp_path)
    assert loaded.voice.rate == 190  # flag
    assert config.load(extra, env, {}, cwd=tmp_path).voice.rate == 170  # environment
    assert loaded.voice.voice == "file"  # --config file
    assert loaded.voice.engine == "silent"  # ./config.toml
    assert loaded.demo == config.DemoConfig()  # built-in defaults


def test_int_is_accepted_for_float_but_bool_is_not_int(tmp_path: Path) -> None:
    assert config.validate({"demo": {"tokens_per_s": 50}}, "x") == {"demo": {"tokens_per_s": 50.0}}
    with pytest.raises(UsageError, match=r"'voice\.rate' must be int"):
        config.validate({"voice": {"rate": True}}, "x")


def test_environment_values_are_parsed_by_type() -> None:
    layer = config.read_env(
        {"VOICESTREAM_DEMO_TOKENS_PER_S": "12.5", "VOICESTREAM_VOICE_RATE": "99"}
    )
    assert layer == {"demo": {"tokens_per_s": 12.5}, "voice": {"rate": 99}}
    with pytest.raises(UsageError, match="VOICESTREAM_VOICE_RATE must be int"):
        config.read_env({"VOICESTREAM_VOICE_RATE": "fast"})


def test_broken_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[voice\nrate = 1\n")
    with pytest.raises(UsageError, match=r"bad\.toml: not valid TOML") as raised:
        config.read_file(bad)
    assert "\n" not in str(raised.value)
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(bad.read_text())


def numeric_fields() -> list[tuple[str, Any]]:
    return [
        (f"{table}.{f.name}", f)
        for table in ("source", "anthropic", "demo", "chunker", "voice", "output", "buffers")
        for f in dataclasses.fields(getattr(config.Config(), table))
        if f.type in ("int", "float")
    ]


def test_every_numeric_key_has_a_range_documented_in_config_toml() -> None:
    text = (REPO / "config.toml").read_text()
    assert numeric_fields()
    for key, f in numeric_fields():
        valid = f.metadata.get("range")
        assert valid is not None, f"{key} has no range"
        name = key.split(".")[1]
        assert f"# Valid: {valid}.\n{name} = " in text, f"config.toml does not give {key}'s range"


BAD_VALUES = [
    ("chunker.max_chars", "0"),  # looped forever
    ("chunker.first_fragment_max_words", "0"),  # UnboundLocalError
    ("demo.tokens_per_s", "0"),
    ("demo.tokens_per_s", "-5"),
    ("demo.tokens_per_s", "nan"),
    ("demo.first_token_s", "-1"),
    ("demo.first_token_s", "nan"),
    ("buffers.fixed_capacity", "0"),
    ("buffers.audio_block_s", "1e-9"),  # hung
    ("buffers.stall_budget_s", "-1"),
    ("buffers.stall_budget_s", "nan"),
    ("buffers.audio_cap_s", "inf"),
    ("voice.rate", "0"),
    ("voice.rate", "-100"),
    ("anthropic.timeout_s", "0"),
]


@pytest.mark.parametrize(("key", "raw"), BAD_VALUES)
def test_out_of_range_values_are_refused_naming_where_key_and_range(
    tmp_path: Path, key: str, raw: str
) -> None:
    table, name = key.split(".")
    valid = str(dict(numeric_fields())[key].metadata["range"])
    variable = config.env_name(table, name)
    with pytest.raises(UsageError) as raised:
        config.load(None, {variable: raw}, cwd=tmp_path)
    assert str(raised.value).startswith(f"environment: {variable}: '{key}' must be {valid}, not ")
    toml = tmp_path / "bad.toml"
    toml.write_text(f"[{table}]\n{name} = {raw}\n")
    with pytest.raises(UsageError, match=rf"^{toml}: '{key}' must be {valid}, not"):
        config.load(toml, {}, cwd=tmp_path)


def test_rules_between_keys_name_the_key_that_was_set(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=r"'buffers.audio_floor_s' must be at most buffers.audio_cap_s"
    ):
        config.load(None, {"VOICESTREAM_BUFFERS_AUDIO_FLOOR_S": "20"}, cwd=tmp_path)
    with pytest.raises(UsageError, match=r"command line: 'buffers.audio_cap_s' must be at least"):
        config.load(None, {}, {"buffers": {"audio_cap_s": 1.0}}, cwd=tmp_path)


def test_named_choices_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=r"'buffers\.policy' must be one of adaptive, fixed, unbounded"
    ):
        config.load(None, {"VOICESTREAM_BUFFERS_POLICY": "huge"}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", False), ("false", False), ("No", False), ("off", False), ("1", True), ("yes", True)],
)
def test_booleans_from_the_environment_are_strict(raw: str, value: bool) -> None:
    assert config.read_env({"VOICESTREAM_ANTHROPIC_TOOLS": raw}) == {"anthropic": {"tools": value}}


def test_a_boolean_from_the_environment_that_is_neither_is_refused() -> None:
    with pytest.raises(UsageError, match="VOICESTREAM_ANTHROPIC_TOOLS must be bool, not 'maybe'"):
        config.read_env({"VOICESTREAM_ANTHROPIC_TOOLS": "maybe"})


def test_lists_from_the_environment_split_on_commas() -> None:
    layer = config.read_env({"VOICESTREAM_CHUNKER_ABBREVIATIONS": "approx, ca,,vs "})
    assert layer == {"chunker": {"abbreviations": ("approx", "ca", "vs")}}
