"""``voicestream chat``: a spoken conversation in the terminal, with barge-in.

A thin trio loop: read a line; a /command runs from :data:`COMMANDS`; a question
becomes one :class:`voicestream.runner.Answer`, the way ``say`` runs one. Enter
or Esc (or Ctrl-C) while it plays calls its ``stop()``: the model's stream is
closed at once (no more tokens are generated), queued text and audio are
dropped, the sound device is aborted, and the prompt is back. Ctrl-C at the
prompt quits; a second Ctrl-C while an answer is still stopping quits too (exit
130). SIGTERM and SIGHUP stop the answer the same way (its audio and transcript
line are kept), then quit (exit 143, 129).

What was heard, the history and the transcript lines are
:mod:`voicestream.conversation` (no I/O); the play position behind "heard" is
:mod:`voicestream.playback`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

import numpy as np
import trio

from . import stopping
from .audio import Audio
from .config import Config, check
from .conversation import Conversation, Turn
from .errors import SinkError, UsageError, VoicestreamError, redact, root_cause
from .listen import Heard, Listener, Playing, resample
from .playback import Playback, Timeline, heard_frames
from .runner import Answer, Result
from .sinks import open_sink
from .sinks.wav import WavSink
from .sources import Source, open_source, preload
from .sources.demo import DemoSource, demo_chat_answer
from .synthesizers import Synthesizer, open_synthesizer
from .terminal import Captions, Keyboard, SafeOutput

HELP = """\
  /voice NAME      switch voice ('voicestream voices' lists them)
  /rate WPM        speech rate, words per minute
  /save FILE.wav   write the last answer's audio to a file
  /history         the conversation so far
  /clear           forget the conversation
  /quit            leave (Ctrl-D or Ctrl-C at the prompt do too)
  /help            this list
While an answer plays, Enter or Esc (or Ctrl-C) stops it."""

NO_DEVICE = "no audio output device found; use --out DIR to write each answer to a WAV file"


def next_number(folder: Path) -> int:
    """The number for the next answer's WAV in ``folder``, after those already there."""
    numbers = [
        int(m.group(1)) for p in folder.glob("answer-*.wav") if (m := re.search(r"(\d+)", p.name))
    ]
    return max(numbers, default=0) + 1


class Chat:
    def __init__(
        self,
        config: Config,
        source: str,
        keyboard: Keyboard,
        stdout: TextIO,
        stderr: TextIO,
        out_dir: Path | None = None,
        transcript: Path | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.keyboard = keyboard
        self.captions = Captions(SafeOutput(stdout))
        self.stdout = stdout
        self.stderr = stderr
        self.out_dir = out_dir
        self.transcript = transcript
        self.number = next_number(out_dir) if out_dir is not None else 1
        self.conversation = Conversation()
        self.asked = 0
        self.written = False  # an answer's text is on stdout (piped: a blank line next)
        self.last: Playback | None = None
        self.synthesizer: Synthesizer | None = None
        self.answering: Answer | None = None
        self.stopping = False
        self.exit_code = 0
        self.leaving = 0  # the exit code of a stop signal: quit after the answer
        self.listener = listener  # chat --listen: spoken questions and barge-ins
        self.spoken: Heard | None = None  # the question being answered, if it was spoken
        self.barged_at: int | None = None  # the play position where a person began to speak

    def say(self, line: str, file: TextIO | None = None) -> None:
        print(redact(line), file=file or self.stderr, flush=True)

    async def run(self) -> int:
        self.synthesizer = await open_synthesizer(self.config.voice)
        if self.out_dir is None:
            from .sinks.speaker import check_device

            try:
                check_device(self.config.output.device)
            except UsageError as e:
                if self.config.output.device:
                    raise
                raise UsageError(NO_DEVICE) from e
        if self.source == "demo" and self.config.source.name == "auto":  # not chosen: say why
            self.say(
                "voicestream: ANTHROPIC_API_KEY is not set (nor OPENAI_BASE_URL or "
                "OPENAI_API_KEY); chatting with offline demo answers"
            )
        if self.keyboard.tty:
            ask = "Ask a question (or say it)" if self.listener else "Ask a question"
            self.say(f"{ask}; Enter or Esc stops an answer; /help lists the commands.")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._on_signals, nursery.cancel_scope)
            nursery.start_soon(preload, self.source)  # the SDK loads while the person types
            if self.listener is not None:
                nursery.start_soon(self.listener.run)
            await self._converse()
            nursery.cancel_scope.cancel()
        return self.exit_code

    async def _on_signals(self, everything: trio.CancelScope) -> None:
        with trio.open_signal_receiver(*stopping.SIGNALS) as signals:
            async for signum in signals:
                if signum != signal.SIGINT:
                    # Told to end (SIGTERM) or the terminal is gone (SIGHUP): the answer
                    # stops as on a barge-in (its audio and transcript are kept), then quit.
                    self.exit_code = self.leaving = stopping.exit_code(signum)
                    if self.answering is not None:
                        self.stopping = True
                        self.answering.stop()
                    else:
                        everything.cancel()
                elif self.answering is not None and not self.stopping:
                    self.stopping = True
                    self.answering.stop()
                else:  # at the prompt, or a second Ctrl-C while stopping
                    self.exit_code = 130 if self.answering is not None else 0
                    everything.cancel()

    async def _converse(self) -> None:
        while True:
            if self.keyboard.tty:
                self.stderr.write("demo> " if self.source == "demo" else "> ")
                self.stderr.flush()
            line = await self._next_line()
            if line is None:
                if self.keyboard.tty:
                    self.say("")
                return
            question = line.strip()
            if question.startswith("/"):
                if not await self._command(question):
                    return
            elif question:
                await self._answer(question)
            if self.leaving:
                return

    async def _next_line(self) -> str | None:
        """A typed line, or a spoken question (shown as if typed); None at the end of
        the input."""
        self.spoken = None
        if self.listener is None:
            return await self.keyboard.line()
        got: list[str | None] = []
        async with trio.open_nursery() as nursery:

            async def typed() -> None:
                got.append(await self.keyboard.line())
                nursery.cancel_scope.cancel()

            async def said() -> None:
                assert self.listener is not None
                self.spoken = await self.listener.questions.receive()
                got.append(self.spoken.text)
                nursery.cancel_scope.cancel()

            nursery.start_soon(typed)
            nursery.start_soon(said)
        if self.spoken is not None:
            shown = self.spoken.text.replace("\n", " ")
            self.stderr.write(f"{shown}\n" if self.keyboard.tty else f"> {shown}\n")
            self.stderr.flush()
        return got[0]

    def _open_source(self, question: str) -> Source:
        if self.source == "demo":
            return DemoSource(self.config.demo, demo_chat_answer(self.asked))
        history = self.conversation.history
        return open_source(self.source, self.config, question, history=history)

    async def _answer(self, question: str) -> None:
        assert self.synthesizer is not None
        try:
            source = self._open_source(question)
        except UsageError as e:  # a question that cannot be sent: said, and the prompt back
            self.say(f"voicestream: {e}")
            return
        if self.written and not self.keyboard.tty:
            self.captions.write("\n")  # piped: a blank line between one answer and the next
            self.written = False
        self.asked += 1
        path = None
        if self.out_dir is not None:
            path = self.out_dir / f"answer-{self.number:03d}.wav"
            self.number += 1
        rate = self.synthesizer.sample_rate
        sink = open_sink("wav" if path else "speaker", rate, self.config.output, path)
        playback = Playback(sink, rate)
        answer = Answer(
            source, self.synthesizer, playback, self.config, captions=self.captions,
            keep_heard=True,  # the history keeps what was heard
        )  # fmt: skip
        self.answering, self.stopping, self.barged_at = answer, False, None
        spoken = self.spoken
        if self.listener is not None:
            self.listener.playing = self._playing(answer, playback)
        try:
            with self.keyboard.keys():
                async with trio.open_nursery() as helpers:
                    helpers.start_soon(self._stop_on_key, answer)
                    helpers.start_soon(self._follow, playback, answer.timeline)
                    try:
                        result = await answer.run()
                    except Exception as e:  # a failed answer never ends the chat
                        cause = root_cause(e)
                        error = VoicestreamError(
                            f"the answer failed: {type(cause).__name__}: {cause}"
                        )
                        result = Result("failed", answer.text, answer.metrics, error)
                    helpers.cancel_scope.cancel()
        finally:
            self.answering = None
            if self.listener is not None:
                self.listener.playing = None
        for notice in result.notices:
            self.say(f"voicestream: {notice}")
        self.written = self.written or bool(result.text.strip())
        interrupted = result.outcome == "stopped"
        self._finish(
            question, result.text.strip(), playback, answer.timeline, interrupted, result.error,
            path, spoken,
        )  # fmt: skip

    def _finish(
        self,
        question: str,
        written: str,
        playback: Playback,
        timeline: Timeline,
        interrupted: bool,
        error: VoicestreamError | None,
        path: Path | None,
        spoken: Heard | None = None,
    ) -> None:
        frames = heard_frames(playback, timeline)
        if self.barged_at is not None:  # what was heard when the person began to speak
            frames = min(frames, self.barged_at)
        heard_s = frames / playback.rate
        footer = f"stopped after {heard_s:.1f} s of speech; the history keeps what was heard"
        self.captions.end(footer if interrupted else "")
        if interrupted and not self.captions.ansi:
            self.say(f"voicestream: {footer}")
        if error is not None:
            self.say(f"voicestream: {error}")
        turn = Turn(
            question, written, timeline.heard(frames), interrupted, str(error) if error else None,
            str(path) if path else None, playback.written / playback.rate, heard_s,
            timeline.started(frames), (spoken.start_s, spoken.end_s) if spoken else None,
        )  # fmt: skip
        if not self.conversation.add(turn):
            return  # nothing came: the question is not part of the conversation
        self.last = playback
        if self.transcript is not None:
            lines = turn.transcript(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            with self.transcript.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)

    def _playing(self, answer: Answer, playback: Playback) -> Playing:
        """The answer as the listener sees it: what was played lately, where it is, a
        hold while a person speaks over it, and a barge-in that stops it keeping what
        was heard when they began."""
        timeline = answer.timeline

        def heard() -> int:
            return heard_frames(playback, timeline)

        def played(from_s: float, to_s: float) -> np.ndarray:
            at, rate = heard(), playback.rate
            return resample(
                playback.segment(at + round(from_s * rate), at + round(to_s * rate)), rate
            )

        def stop(at: int) -> None:
            self.barged_at = at
            self.stopping = True
            answer.stop()

        return Playing(played, heard, playback.pause, stop)

    async def _stop_on_key(self, answer: Answer) -> None:
        await self.keyboard.stop_key()
        self.stopping = True
        answer.stop()

    async def _follow(self, playback: Playback, timeline: Timeline) -> None:
        """Keep the status line on the sentence being played, its word being heard
        emphasized."""
        while True:
            at = timeline.position(heard_frames(playback, timeline))
            self.captions.speaking(at.text, at.word)
            await trio.sleep(0.05)

    async def _command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        name, _, argument = line.partition(" ")
        command = COMMANDS.get(name)
        if command is None:
            self.say(f"voicestream: unknown command {name}; /help lists the commands")
            return True
        return await command(self, name, argument.strip()) is not QUIT

    async def _quit(self, name: str, argument: str) -> object:
        return QUIT

    async def _help(self, name: str, argument: str) -> None:
        self.say(HELP, self.stdout)

    async def _clear(self, name: str, argument: str) -> None:
        self.conversation.clear()
        self.say("voicestream: the conversation is forgotten")

    async def _history(self, name: str, argument: str) -> None:
        for message in self.conversation.history:
            who = "you" if message["role"] == "user" else "assistant"
            self.say(f"{who}: {message['content']}", self.stdout)
        if not self.conversation.history:
            self.say("voicestream: no conversation yet")

    async def _voice(self, name: str, argument: str) -> None:
        voice = self.config.voice
        if name == "/voice":
            if not argument:
                return self.say("voicestream: /voice needs a NAME; 'voicestream voices' lists them")
            voice = dataclasses.replace(voice, voice=argument)
        else:
            if not argument.isdigit():
                return self.say("voicestream: /rate needs a number of words per minute")
            voice = dataclasses.replace(voice, rate=int(argument))
        try:
            config = check(dataclasses.replace(self.config, voice=voice), {"voice.rate": name})
            self.synthesizer = await open_synthesizer(voice)
        except UsageError as e:
            return self.say(f"voicestream: {e}")
        self.config = config
        self.say(f"voicestream: voice {voice.voice or 'default'} at {voice.rate} words per minute")

    async def _save(self, name: str, argument: str) -> None:
        if not argument:
            return self.say("voicestream: /save needs a FILE.wav")
        if self.last is None:
            return self.say("voicestream: no answer to save yet")
        audio = Audio(self.last.audio(), self.last.rate)
        try:
            wav = WavSink(Path(argument).expanduser(), audio.rate)
        except UsageError as e:
            return self.say(f"voicestream: {e}")
        try:
            wav.store(audio)
        except SinkError as e:
            return self.say(f"voicestream: {e}")
        finally:
            wav.close()
        self.say(f"voicestream: saved {audio.seconds:.1f} s to {wav.path}")


QUIT = object()
COMMANDS: dict[str, Callable[[Chat, str, str], Awaitable[object]]] = {
    "/voice": Chat._voice,
    "/rate": Chat._voice,
    "/save": Chat._save,
    "/history": Chat._history,
    "/clear": Chat._clear,
    "/help": Chat._help,
    "/quit": Chat._quit,
    "/exit": Chat._quit,
}
