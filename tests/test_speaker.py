"""The real speaker path: PortAudio into a private PulseAudio null sink, recorded back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Cli
from wavcheck import read_wav, voiced_fraction

from voicestream.sinks.speaker import Ring
from voicestream.testing import wait_for
from voicestream.words import spans

TEXT = "Hello from the speaker test. This sentence is played through PortAudio, into a null sink."


def record(pulse: dict[str, Any], path: Path) -> subprocess.Popen[bytes]:
    command = [
        "parec", "-d", pulse["monitor"], "--rate=22050", "--channels=1", "--format=s16le",
        "--file-format=wav", str(path),
    ]  # fmt: skip
    recorder = subprocess.Popen(command, env=pulse["env"])

    def connected() -> bool:  # the recorder's stream is up before anything plays
        listing = ["pactl", "list", "short", "source-outputs"]
        return bool(subprocess.run(listing, env=pulse["env"], capture_output=True).stdout.strip())

    wait_for(connected)
    return recorder


def test_speech_plays_on_the_default_device(pulse: dict[str, Any], tmp_path: Path) -> None:
    cli = Cli(pulse["env"], tmp_path)
    reference = tmp_path / "reference.wav"
    assert cli.run("say", "-", "--out", str(reference), input=TEXT).returncode == 0
    rate, expected = read_wav(reference)

    recording, metrics = tmp_path / "recording.wav", tmp_path / "m.json"
    recorder = record(pulse, recording)
    result = cli.run("say", "-", "--metrics", str(metrics), input=TEXT)
    expected_s = voiced_fraction(expected, rate) * len(expected) / rate

    def recorded_s() -> float:
        _, heard = read_wav_lenient(recording)
        return voiced_fraction(heard, rate) * len(heard) / rate

    wait_for(lambda: recorded_s() >= 0.9 * expected_s)  # the tail has reached the recording
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout == TEXT + "\n"

    rec_rate, heard = read_wav_lenient(recording)
    assert rec_rate == rate
    assert voiced_fraction(heard, rate) > 0.2
    # parec skips the stretches a sink renders as pure silence, so compare the
    # voiced time (20 ms windows with speech), not the length of the recording.
    heard_s = voiced_fraction(heard, rate) * len(heard) / rate
    assert heard_s == pytest.approx(expected_s, rel=0.10)
    figures = json.loads(metrics.read_text())
    # Played in real time, the long sentence is said in parts that fit the jitter
    # buffer, each with a short pause of its own: a little longer than the file's.
    assert len(expected) / rate <= figures["audio_s"] <= 1.06 * len(expected) / rate


def read_wav_lenient(path: Path) -> tuple[int, Any]:
    """parec, stopped by a signal, may leave the sizes in the header unpatched."""
    raw = path.read_bytes()
    if b"data" not in raw:
        return 22050, np.zeros(0, dtype=np.int16)  # nothing recorded yet
    index = raw.index(b"data") + 8
    rate = int.from_bytes(raw[24:28], "little")
    return rate, np.frombuffer(raw[index : index + (len(raw) - index) // 2 * 2], dtype=np.int16)


def test_devices_lists_the_sound_servers_outputs(pulse: dict[str, Any], tmp_path: Path) -> None:
    result = Cli(pulse["env"], tmp_path).run("devices")
    assert result.returncode == 0
    assert "default" in result.stdout or "pulse" in result.stdout


def test_devices_without_a_sound_server_says_so(cli: Cli) -> None:
    result = cli.run("devices")
    assert result.returncode == 0 and result.stdout == ""
    assert "no audio output device" in result.stderr


UNDERRUN_SCRIPT = """
import json, numpy as np, trio
from voicestream.audio import Audio
from voicestream.sinks.speaker import SpeakerSink

async def main():
    sink = SpeakerSink(22050)
    tone = (np.sin(np.arange(11025) / 5) * 8000).astype(np.int16)  # half a second
    await sink.write(Audio(tone, 22050))
    started = trio.current_time()
    await trio.sleep(1.5)  # the synthesizer is late: the device runs dry
    await sink.write(Audio(tone, 22050))
    await sink.drain()
    sink.close()
    print(json.dumps({"underruns": sink.underruns, "underrun_s": sink.underrun_s,
                      "played_s": sink.played_s, "gap_s": trio.current_time() - started}))

trio.run(main)
"""


def test_speaker_survives_a_late_synthesizer(pulse: dict[str, Any]) -> None:
    # Whether a sound server keeps pulling frames through a gap is its own
    # business (a fresh PulseAudio null sink sometimes pauses instead), so the
    # counting itself is checked on the ring below; here: all of it is played,
    # and the silence after the end is never counted as an underrun.
    result = subprocess.run(
        [sys.executable, "-c", UNDERRUN_SCRIPT], env=pulse["env"], capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["played_s"] == pytest.approx(1.0)
    # Padding before the second write and while it plays, never after the end.
    assert figures["underrun_s"] <= figures["gap_s"]


def test_ring_counts_underruns_between_start_and_end() -> None:
    ring = Ring(8)
    out = np.ones(4, dtype=np.int16)
    assert ring.push(np.arange(1, 11, dtype=np.int16)) == 8  # full: the rest waits
    ring.pull(out)
    assert out.tolist() == [1, 2, 3, 4] and ring.room() == 4
    assert ring.push(np.arange(9, 13, dtype=np.int16)) == 4  # wraps around
    ring.pull(out), ring.pull(out)
    assert out.tolist() == [9, 10, 11, 12] and ring.underruns == 0
    ring.pull(out)  # the synthesizer is late
    assert out.tolist() == [0, 0, 0, 0] and ring.underruns == 1 and ring.underrun_frames == 4
    ring.push(np.array([7, 7], dtype=np.int16))
    ring.pull(out)
    assert out.tolist() == [7, 7, 0, 0] and ring.underruns == 2 and ring.underrun_frames == 6
    ring.ending = True  # the answer is over: padding is the end, not an underrun
    ring.pull(out)
    assert ring.underruns == 2 and ring.played == 14


def test_ctrl_c_while_playing_exits_130(pulse: dict[str, Any], tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    process = Cli(pulse["env"], tmp_path).popen("say", "-", "--metrics", str(metrics))
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write((TEXT + " ").encode() * 5)
    process.stdin.flush()
    assert process.stdout.read(5) == b"Hello"
    time.sleep(1.0)  # speech is playing
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    assert process.stderr is not None and b"Traceback" not in process.stderr.read()
    # The words heard are those the device played, far fewer than were written.
    assert 0 < json.loads(metrics.read_text())["heard_words"] < len(spans(TEXT)) * 5


def test_reaching_the_text_hard_cap_is_reported(pulse: dict[str, Any], tmp_path: Path) -> None:
    # Speech plays in real time, so a long text piles up in front of it until the cap.
    process = Cli(pulse["env"], tmp_path).popen(
        "say", "-", "--engine", "silent",
        VOICESTREAM_BUFFERS_TEXT_HARD_CAP="4096", VOICESTREAM_BUFFERS_STALL_BUDGET_S="0.1",
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"A sentence that takes a while to say out loud, word by word. " * 300)
    process.stdin.flush()
    assert process.stdout.read(10) == b"A sentence"
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert "text_hard_cap" in stderr and stderr.count("\n") == 1


def test_out_and_play_at_once_store_and_play_the_same_speech(
    pulse: dict[str, Any], tmp_path: Path
) -> None:
    cli = Cli(pulse["env"], tmp_path)
    out, only, recording = tmp_path / "both.wav", tmp_path / "only.wav", tmp_path / "rec.wav"
    assert cli.run("say", "-", "--out", str(only), input=TEXT).returncode == 0
    rate, expected = read_wav(only)
    expected_s = voiced_fraction(expected, rate) * len(expected) / rate
    recorder = record(pulse, recording)
    result = cli.run("say", "-", "--out", str(out), "--play", input=TEXT)

    def recorded_s() -> float:
        _, heard = read_wav_lenient(recording)
        return voiced_fraction(heard, rate) * len(heard) / rate

    wait_for(lambda: recorded_s() >= 0.9 * expected_s)  # it was played, all of it
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    # And stored: as played, the long sentence in parts (see the test above).
    assert len(expected) <= len(read_wav(out)[1]) <= 1.06 * len(expected)
