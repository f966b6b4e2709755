"""A 16-bit PCM mono WAV file that is valid after every write.

The header is written when the file is created and patched by :mod:`wave` on
every write, and the file is flushed each time: whatever stops the program,
the header matches the data already on disk.
"""

from __future__ import annotations

import wave
from pathlib import Path

from ..audio import Audio
from ..errors import UsageError


class WavSink:
    underruns = 0
    underrun_s = 0.0

    def __init__(self, path: Path, rate: int) -> None:
        parent = path.parent
        if not parent.is_dir():
            raise UsageError(f"cannot write {path}: the directory {parent} does not exist")
        try:
            self._file = path.open("wb")
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
        self.path = path
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 (kept open across writes)
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self._wav.writeframes(b"")  # the header, so even an empty answer is a valid file
        self._file.flush()
        self.frames = 0

    def _store(self, audio: Audio) -> None:
        if self._file.closed:
            return
        self._wav.writeframes(audio.samples.tobytes())
        self._file.flush()
        self.frames += len(audio.samples)

    async def write(self, audio: Audio) -> None:
        # A few hundred kB to the page cache: not worth a thread.
        self._store(audio)

    async def drain(self) -> None:
        pass

    def salvage(self, audio: Audio) -> None:
        self._store(audio)

    def close(self) -> None:
        if not self._file.closed:
            self._wav.close()
            self._file.close()
