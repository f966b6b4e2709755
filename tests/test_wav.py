"""The WAV sink: valid after every write, whatever stops it, and never past its format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from test_pipeline import ListSource
from wavcheck import read_wav

from voicestream.audio import Audio
from voicestream.errors import SinkError, UsageError
from voicestream.pipeline import Metrics, speak
from voicestream.sinks.wav import HEADER_BYTES, WavSink
from voicestream.synthesizers.silent import SilentSynthesizer

RATE = 22050


def tone(frames: int, text: str = "") -> Audio:
    return Audio((np.arange(frames) % 100).astype(np.int16), RATE, text)


async def test_the_header_matches_the_data_after_every_write(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sink = WavSink(path, RATE)
    assert len(read_wav(path)[1]) == 0  # valid from the start
    for frames in (100, 2205, 1):
        before = len(read_wav(path)[1])
        await sink.write(tone(frames))
        assert len(read_wav(path)[1]) == before + frames  # read while the sink is open
    sink.close()


async def test_the_size_limit_stops_the_answer_with_a_valid_file(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "a.wav"
    limit = int(9.75 * RATE * 2) + 1  # 9.75 s of audio and an odd byte that never fits
    sink = WavSink(path, RATE, max_data_bytes=limit)
    metrics = Metrics()
    source = ListSource(["This sentence is long enough to take a while to say. "] * 6)
    ends: list[float] = []  # where each chunk's audio ends: a file takes a chunk per block
    with pytest.raises(BaseExceptionGroup) as raised:
        await speak(
            source,
            SilentSynthesizer(),
            sink,
            metrics=metrics,
            on_chunk=lambda index, audio, start: ends.append(start + audio.seconds),
        )
    assert raised.group_contains(SinkError, match="size limit")
    _rate, samples = read_wav(path)
    # The whole blocks that fit, not a frame past the limit:
    assert len(samples) / RATE == max(end for end in ends if end <= 9.75)
    assert len(samples) / RATE > 5  # more than one block
    assert metrics.audio_s == pytest.approx(len(samples) / RATE)  # what the file holds
    assert sink.leftover(tone(10)) is False  # once failed, nothing more goes in


def test_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no reader: opening it for writing would block forever
    for path in (fifo, Path("/dev/full"), tmp_path):
        with pytest.raises(UsageError, match="not a regular file"):
            WavSink(path, RATE)


async def test_a_failed_write_cuts_the_file_back_to_its_header(tmp_path: Path) -> None:
    import resource
    import signal

    path = tmp_path / "a.wav"
    sink = WavSink(path, RATE)
    await sink.write(tone(RATE))
    # The file may not grow past 1.5 s of audio: the next second fails half way (EFBIG).
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (HEADER_BYTES + 3 * RATE, hard))
    try:
        with pytest.raises(SinkError, match=r"writing .*a\.wav; it holds the 1\.0 s"):
            await sink.write(tone(RATE))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    sink.close()
    assert len(read_wav(path)[1]) == RATE  # the half-written second is gone


def test_a_block_that_exactly_fills_the_size_limit_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "full.wav"
    sink = WavSink(path, RATE, max_data_bytes=2 * 1000)
    assert sink.store(Audio(np.ones(600, dtype=np.int16), RATE, "")) is True
    assert sink.store(Audio(np.ones(400, dtype=np.int16), RATE, "")) is True  # to the byte
    with pytest.raises(SinkError, match="size limit"):
        sink.store(Audio(np.ones(1, dtype=np.int16), RATE, ""))  # one sample more
    sink.close()
    assert len(read_wav(path)[1]) == 1000
