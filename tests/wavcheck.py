"""Read WAV files strictly, and measure what is in them."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """``(rate, int16 samples)``; fails unless the header matches the data exactly."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE", "not a RIFF/WAVE file"
    (riff_size,) = struct.unpack("<I", raw[4:8])
    assert riff_size == len(raw) - 8, f"RIFF size {riff_size} != {len(raw) - 8}"
    fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", raw[20:36])
    assert (fmt, channels, bits) == (1, 1, 16), "not 16-bit PCM mono"
    assert raw[36:40] == b"data"
    (data_size,) = struct.unpack("<I", raw[40:44])
    assert data_size == len(raw) - 44, f"data size {data_size} != {len(raw) - 44}"
    return rate, np.frombuffer(raw[44:], dtype=np.int16)


def voiced_fraction(samples: np.ndarray, rate: int, threshold: float = 300.0) -> float:
    """Share of 20 ms windows whose RMS is above ``threshold``."""
    window = rate // 50
    frames = samples[: len(samples) // window * window].astype(np.float64).reshape(-1, window)
    if not len(frames):
        return 0.0
    return float((np.sqrt((frames**2).mean(axis=1)) > threshold).mean())
