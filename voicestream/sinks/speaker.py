"""Play audio on a PortAudio output device through a sounddevice callback.

Frames go into a fixed :class:`Ring`; the PortAudio callback copies from it into
the device's buffer without locking or allocating arrays, fills any shortfall
with silence and counts it as an underrun (after playback began, before the
end of the answer). Single producer, single consumer: the writer only moves
``written`` after copying in, the callback only moves ``played`` after copying
out. When the writer waits for room, the callback wakes it through trio's
thread-safe ``run_sync_soon``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import trio

from ..audio import Audio
from ..errors import UsageError

NO_DEVICE = "no audio output device found; use --out FILE.wav to write the speech to a file"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError:
        raise UsageError(
            "PortAudio is not installed: run 'apt-get install libportaudio2', or use --out FILE.wav"
        ) from None
    return sounddevice


def list_devices(kind: str = "output") -> list[tuple[int, str, int]]:
    """``(index, name, channels)`` of every ``output`` (or ``input``) device PortAudio
    sees."""
    channels = f"max_{kind}_channels"
    return [
        (d["index"], d["name"], d[channels])
        for d in _sounddevice().query_devices()
        if d[channels] > 0
    ]


def check_device(device: str, kind: str = "output", none: str = NO_DEVICE) -> int | str | None:
    """The ``output`` (or ``input``) device to open, or :class:`UsageError` if there is
    none (``none`` says what to do when there is no default one)."""
    sd = _sounddevice()
    wanted: int | str | None = int(device) if device.isdigit() else (device or None)
    try:
        sd.query_devices(wanted, kind=kind)
    except (sd.PortAudioError, ValueError):
        if wanted is None:
            raise UsageError(none) from None
        listing = "voicestream devices" + (" --input" if kind == "input" else "")
        raise UsageError(f"no audio {kind} device '{device}'; '{listing}' lists them") from None
    return wanted


class Ring:
    """A single-producer, single-consumer ring of int16 frames that counts underruns."""

    def __init__(self, frames: int) -> None:
        self.data = np.zeros(frames, dtype=np.int16)
        self.written = 0  # frames ever pushed (writer only)
        self.played = 0  # frames ever pulled (reader only)
        self.ending = False  # set by the writer: a shortfall now is the end, not an underrun
        self.paused = False  # set by the writer: play silence, take nothing, count nothing
        self.underruns = 0  # pulls that had to pad with silence
        self.underrun_frames = 0

    def room(self) -> int:
        return len(self.data) - (self.written - self.played)

    def push(self, frames: Any) -> int:
        """Copy in as many of ``frames`` as fit; return how many."""
        size = len(self.data)
        n = min(self.room(), len(frames))
        i = self.written % size
        first = min(n, size - i)
        self.data[i : i + first] = frames[:first]
        self.data[: n - first] = frames[first:n]
        self.written += n
        return n

    def pull(self, out: Any) -> None:
        """Fill ``out`` (a 1-D view) with the next frames, padding with silence."""
        if self.paused:
            out[:] = 0
            return
        size, frames = len(self.data), len(out)
        start = self.played
        n = min(frames, self.written - start)
        i = start % size
        first = min(n, size - i)
        out[:first] = self.data[i : i + first]
        out[first:n] = self.data[: n - first]
        out[n:] = 0
        self.played = start + n
        if n < frames and not self.ending:
            self.underruns += 1
            self.underrun_frames += frames - n


class SpeakerSink:
    block_s = None  # the configured size: small blocks for a device

    def __init__(
        self, rate: int, device: str = "", latency_s: float = 0.1, buffer_s: float = 1.0
    ) -> None:
        sd = _sounddevice()
        self.rate = rate
        self.ring = Ring(int(rate * buffer_s))
        self._started = False
        self._drained = False
        self._waiting = False
        self._progress = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._limiter = trio.CapacityLimiter(1)
        self._stream = sd.OutputStream(
            samplerate=rate,
            channels=1,
            dtype="int16",
            device=check_device(device),
            latency=latency_s,
            callback=self._callback,
        )

    @property
    def underruns(self) -> int:
        return self.ring.underruns

    @property
    def underrun_s(self) -> float:
        return self.ring.underrun_frames / self.rate

    @property
    def played_s(self) -> float:
        """Seconds of audio heard so far: what the device has taken, less what it
        still holds (its output latency), until it has played everything out."""
        taken = self.ring.played / self.rate
        if self._drained or not self._started:
            return taken
        return max(0.0, taken - float(self._stream.latency))

    def _callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        self.ring.pull(outdata[:, 0])
        if self._waiting:
            self._waiting = False
            self._token.run_sync_soon(self._progress.set, idempotent=True)

    async def _wait_for_progress(self) -> None:
        self._progress = trio.Event()
        self._waiting = True
        await self._progress.wait()

    async def write(self, audio: Audio) -> None:
        data = audio.samples
        while len(data):
            n = self.ring.push(data)
            if n == 0:
                await self._wait_for_progress()
                continue
            data = data[n:]
            if not self._started:
                self._started = True
                self._stream.start()
        await trio.lowlevel.checkpoint()

    async def drain(self) -> None:
        self.ring.ending = True
        while self._started and self.ring.played < self.ring.written:
            await self._wait_for_progress()
        if self._started:
            # Pa_StopStream returns once the device has played what it holds.
            await trio.to_thread.run_sync(self._stream.stop, limiter=self._limiter)
        self._drained = True

    def leftover(self, audio: Audio) -> bool:
        return False

    def pause(self, held: bool) -> None:
        """Hold the sound (silence, the ring kept as it is), or let it go on from
        where it was: a person speaking over the answer (chat --listen)."""
        self.ring.paused = held

    def silence(self) -> None:
        """Stop the sound now: what the device and the ring hold is dropped."""
        self.ring.ending = True
        if not self._stream.closed:
            self._stream.abort()

    def close(self) -> None:
        self.silence()
        if not self._stream.closed:
            self._stream.close()
