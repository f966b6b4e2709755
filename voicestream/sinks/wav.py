"""A 16-bit PCM mono WAV file that is valid after every write, whatever happens.

The header is written when the file is opened (so a bad path, a full disk or a
file that is not a regular file is a usage error before any request) and
rewritten after every block of samples, which go straight to the kernel: a
crash, a signal or SIGKILL leave a file whose header matches its data. When a
write fails (no space left, an I/O error), the file is cut back to what its
header already counts and the answer stops with one line; the same when the
data would pass the format's limit (the RIFF sizes are 32 bits: 4 GiB, about
27 hours at 22,050 Hz), which this sink refuses to cross rather than corrupt
the header. Blocks are stored whole or not at all, so the file always ends
where a block ended.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from ..audio import Audio
from ..errors import SinkError, UsageError
from . import BaseSink

HEADER_BYTES = 44
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)  # the RIFF chunk's size must fit 32 bits


def header(rate: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header of a mono 16-bit PCM WAV with ``data_bytes`` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16,
        b"data", data_bytes,
    )  # fmt: skip


def open_regular(path: Path, what: str, hint: str = "name a regular file") -> int:
    """Open ``path`` for writing (created or truncated) as a file descriptor.

    Refuses, without blocking, anything that is not a regular file: a FIFO with no
    reader would hang, one with a reader or a device cannot be rewritten in place.
    """
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: the directory {path.parent} does not exist")
    fd = -1
    try:
        if not path.exists() or path.is_file():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise UsageError(f"cannot write {what} {path}: {e.strerror}") from None
    if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
        if fd >= 0:
            os.close(fd)
        raise UsageError(f"cannot write {what} {path}: not a regular file; {hint}")
    os.set_blocking(fd, True)
    os.ftruncate(fd, 0)
    return fd


def describe(error: OSError) -> str:
    return "no space left on device" if error.errno == 28 else (error.strerror or str(error))


class WavSink(BaseSink):
    def __init__(self, path: Path, rate: int, max_data_bytes: int = MAX_DATA_BYTES) -> None:
        self.path = path
        self.rate = rate
        self.max_data_bytes = max_data_bytes - max_data_bytes % 2
        self.frames = 0
        self.failed = False
        self._fd = open_regular(
            path,
            "the WAV file",
            "its header is rewritten as the answer goes on, so name a "
            "regular file (or use --null to discard the audio)",
        )
        try:
            os.pwrite(self._fd, header(rate, 0), 0)
        except OSError as e:
            os.close(self._fd)
            raise UsageError(f"cannot write {path}: {describe(e)}") from None

    def store(self, audio: Audio) -> bool:
        """Write ``audio`` now (False once the file failed or was closed); a failure is
        one :class:`SinkError`."""
        if self._fd < 0 or self.failed:
            return False
        data = audio.samples.astype("<i2", copy=False).tobytes()
        stored = self.frames * 2
        if len(data) > self.max_data_bytes - stored:
            self.failed = True
            raise SinkError(
                f"{self.path} reached the WAV format's size limit ({self.max_data_bytes} bytes "
                f"of audio); it holds the first {self.frames / self.rate:.1f} s of speech"
            )
        try:
            view = memoryview(data)
            offset = HEADER_BYTES + stored
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
            os.pwrite(self._fd, header(self.rate, stored + len(data)), 0)
        except OSError as e:
            self.failed = True
            try:  # back to what the header counts
                os.pwrite(self._fd, header(self.rate, stored), 0)
                os.ftruncate(self._fd, HEADER_BYTES + stored)
            except OSError:
                pass
            raise SinkError(
                f"{describe(e)} writing {self.path}; it holds the {self.frames / self.rate:.1f} s "
                "of speech stored before"
            ) from None
        self.frames += len(data) // 2
        return True

    async def write(self, audio: Audio) -> None:
        # A few hundred kB to the page cache: not worth a thread.
        self.store(audio)

    def leftover(self, audio: Audio) -> bool:
        try:
            return self.store(audio)
        except SinkError:
            return False  # the answer is already ending; the first failure is the one reported

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
