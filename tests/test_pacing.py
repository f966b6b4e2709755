"""Pacing a slow engine: parts where a speaker could pause, a head start for the first
audio, and no gaps, in virtual time."""

from __future__ import annotations

import dataclasses
import random
import statistics

import numpy as np
import pytest
import trio
import trio.testing

from voicestream.audio import Audio
from voicestream.chunker import SentenceChunker, pauses, weak_pauses
from voicestream.config import Config, DemoConfig
from voicestream.pacing import HOLD_MAX_S, Pacer
from voicestream.runner import Answer
from voicestream.sinks import ClockedSink, NullSink
from voicestream.sources.demo import DemoSource, demo_answer
from voicestream.synthesizers.silent import spoken_seconds
from voicestream.words import estimate

RATE = 22050


def cut(text: str, points: list[int]) -> list[str]:
    return [f"{text[:p].rstrip()} | {text[p:].lstrip()}" for p in points]


def test_pauses_are_where_a_speaker_could_pause() -> None:
    text = "When a language model answers, it writes one small token at a time, roughly 50."
    assert cut(text, pauses(text, 4)) == [
        "When a language model answers, | it writes one small token at a time, roughly 50.",
        "When a language model answers, it writes one small token | at a time, roughly 50.",
    ]  # not after "a time,": the tail would be two words
    # Never after an article, a preposition or a number, never before a particle.
    for text in (
        "The pipeline turns each of the sentences into audio for the listener.",
        "Then you plug it in, and it works at once.",
        "Do this: 1. download it, 2. install it, 3. run it.",
    ):
        for p in pauses(text, 4) + weak_pauses(text, 4):
            before, after = text[:p].split()[-1], text[p:].split()[0]
            assert before.strip(",").lower() not in ("the", "of", "each", "it", "1.", "2.")
            assert not after.endswith(",") or before.endswith(","), (before, after)
    weak = "Here is a short overview of how streaming speech works."
    assert pauses(weak, 4) == [] and cut(weak, weak_pauses(weak, 4)) == [
        "Here is a short overview | of how streaming speech works."
    ]


def test_a_chunk_is_whole_unless_it_could_not_be_made_in_time() -> None:
    pacer = Pacer()
    text = "When a language model answers, it writes one small token at a time, roughly 50."
    assert pacer.split(text, 0.0) == (text, "")  # nothing known yet: whole
    pacer.learn("Sure!", 0.15, 0.5)  # a slow engine: 0.3 s of work a second of audio
    assert pacer.split(text, None) == (text, "")  # a file: nothing plays in real time
    assert pacer.split(text, 30.0) == (text, "")  # plenty ahead
    # A little ahead: the longest part that fits, at a pause.
    assert pacer.split(text, 1.6) == (
        "When a language model answers, it writes one small token",
        "at a time, roughly 50.",
    )
    # Nothing fits: the shortest part, so the gap is as short as it can be.
    assert pacer.split(text, 0.0) == ("When a language model answers,", text[31:])
    fast = Pacer()
    fast.learn("Sure!", 0.003, 0.5)  # espeak-ng: 150x faster than real time
    assert fast.split(text, 0.3) == (text, "")


def test_the_first_audio_waits_only_for_a_slow_engine() -> None:
    slow, fast = Pacer(), Pacer()
    slow.learn("Sure!", 0.15, 0.5)
    fast.learn("Sure!", 0.004, 0.5)
    assert fast.hold(0.5) == 0.0
    assert 0.0 < slow.hold(0.5) <= HOLD_MAX_S
    assert slow.hold(3.0) == 0.0  # a long first fragment is a head start of its own
    slowest = Pacer()
    slowest.learn("Sure!", 5.0, 0.5)  # ten times slower than real time
    assert slowest.hold(0.5) == HOLD_MAX_S  # never more: a gap beats a long silence first


class Engine:
    """Piper-like or espeak-like in virtual time: ``rtf`` seconds of work per second of
    the audio it makes, with lognormal jitter."""

    sample_rate = RATE

    def __init__(self, rtf: float, seed: int) -> None:
        self.rtf, self.rng = rtf, random.Random(seed)
        self.said: list[str] = []

    async def synthesize(self, text: str) -> Audio:
        seconds = spoken_seconds(text, 180)
        await trio.sleep(seconds * self.rtf * self.rng.lognormvariate(0, 0.25))
        frames = round(seconds * RATE)
        self.said.append(text)
        return Audio(np.zeros(frames, dtype=np.int16), RATE, text, tuple(estimate(text, frames)))


class Listener(ClockedSink):
    """Plays in real time, holding a second, as the speaker's ring does."""

    lead_s = 1.0

    async def write(self, audio: Audio) -> None:
        await self.play(audio.seconds)


async def speak_demo(rtf: float, seed: int, pace: bool) -> tuple[Answer, Listener, Engine]:
    config = Config()
    config = dataclasses.replace(config, chunker=dataclasses.replace(config.chunker, pace=pace))
    source = DemoSource(DemoConfig(first_token_s=0.4, tokens_per_s=60, seed=seed))
    listener, engine = Listener(), Engine(rtf, seed)
    answer = Answer(source, engine, listener, config, keep_heard=True)
    await answer.run()
    return answer, listener, engine


@pytest.mark.parametrize("rtf", [0.1, 0.3])
async def test_a_slow_engine_plays_the_demo_without_a_gap(
    clock: trio.testing.MockClock, rtf: float
) -> None:
    paced = [await speak_demo(rtf, seed, pace=True) for seed in range(1, 6)]
    assert sum(listener.underruns for _, listener, _ in paced) == 0
    for answer, _, engine in paced:  # every word said once, in order, parts or not
        timeline = answer.timeline
        assert " ".join(engine.said).split() == timeline.heard(timeline.frames).split()
        chunker = SentenceChunker()
        whole = chunker.feed(demo_answer()) + chunker.flush()
        assert " ".join(engine.said).split() == " ".join(whole).split()
    # The same engine, whole chunks and no head start: a gap after the first fragment.
    unpaced = [await speak_demo(rtf, seed, pace=False) for seed in range(1, 6)]
    assert statistics.fmean(listener.underruns for _, listener, _ in unpaced) >= 0.4


async def test_a_fast_engine_is_cut_only_to_fit_the_room_and_never_held(
    clock: trio.testing.MockClock,
) -> None:
    answer, listener, engine = await speak_demo(0.01, 1, pace=True)
    chunker = SentenceChunker()
    whole = chunker.feed(demo_answer()) + chunker.flush()
    assert " ".join(engine.said).split() == " ".join(whole).split()  # each word once, in order
    assert len(engine.said) > len(whole)  # the long sentences in parts
    first = answer.metrics.ttfa_s
    assert first is not None and first < 0.4 + 0.2  # the demo's first token, then at once
    assert listener.underruns == 0
    # It holds its jitter target (2 s) and about a part, not the rest of a sentence too.
    assert answer.metrics.audio_held_peak_s <= 2.0 + 2.5
    unpaced, _, _ = await speak_demo(0.01, 1, pace=False)
    assert unpaced.metrics.audio_held_peak_s > 6.0  # whole sentences: up to 8 s at once


async def test_a_file_gets_every_chunk_whole(clock: trio.testing.MockClock) -> None:
    config = Config()
    engine = Engine(0.01, 1)
    source = DemoSource(DemoConfig(first_token_s=0.4, tokens_per_s=60, seed=1))
    await Answer(source, engine, NullSink(), config).run()
    chunker = SentenceChunker()
    assert engine.said == chunker.feed(demo_answer()) + chunker.flush()
