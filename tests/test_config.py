"""Configuration: documented defaults, precedence, and one-line errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
