"""The openai source: the real ``openai`` SDK against a loopback Chat Completions server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli, wrote
from wavcheck import read_wav

from voicestream.sources.openai import Splice
from voicestream.testing import FakeAnthropic, FakeOpenAI, OpenAIScript, start_openai

KEY = "sk-openai-test-DO-NOT-PRINT-0123456789"
ANSWER = (
    "The first sentence arrives whole. The second one goes on for a while, so that "
    "the stream can break in the middle of it. A third sentence follows, and a fourth "
    "one closes the answer after all of that has been said."
)
FAST = {"VOICESTREAM_OPENAI_RESUME_BACKOFF_S": "0.01", "VOICESTREAM_OPENAI_TIMEOUT_S": "2"}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = start_openai()
    yield server
    server.close()


def env(fake: FakeOpenAI, **more: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": KEY, **FAST, **more}


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    return stderr


@pytest.fixture(scope="module")
def clean_samples(tmp_path_factory: pytest.TempPathFactory) -> int:
    """How long a clean run of ANSWER is, in samples."""
    server = start_openai()
    server.script = OpenAIScript(text=ANSWER, piece=5)
    folder = tmp_path_factory.mktemp("clean")
    from conftest import Cli as Runner

    from voicestream.testing import clean_env

    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    runner = Runner(clean_env(runtime), folder)
    result = runner.run(
        "say", "q", "--source", "openai", "--out", str(folder / "clean.wav"), **env(server)
    )
    server.close()
    assert result.returncode == 0, result.stderr
    return len(read_wav(folder / "clean.wav")[1])


FAULTS = {
    "dropped": {"drop_after": 12},
    "no-finish": {"end_after": 12},
    "error-object": {"error_after": 12},
    "read-timeout": {"stall_after": 12, "stall_s": 4.0},
}


@pytest.mark.parametrize("strategy", ["instruct", "prefill"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_stream_is_resumed_and_heard_once(
    cli: Cli, fake: FakeOpenAI, tmp_path: Path, clean_samples: int, fault: str, strategy: str
) -> None:
    fake.script = OpenAIScript(text=ANSWER, piece=5, faulty_requests=1, **FAULTS[fault])  # type: ignore[arg-type]
    out = tmp_path / "a.wav"
    result = cli.run(
        "say", "q", "--source", "openai", "--out", str(out),
        **env(fake, VOICESTREAM_OPENAI_RESUME=strategy),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"  # nothing twice, nothing skipped
    assert result.stderr == wrote(out, result.stderr)  # and nothing else
    first, second = fake.requests
    said = ANSWER[: 5 * 12]
    assert second.body["messages"][len(first.body["messages"])] == {
        "role": "assistant",
        "content": said,
    }
    if strategy == "instruct":
        assert second.body["messages"][-1]["role"] == "user"
    assert "continue_final_message" not in second.body  # vLLM's flag only when asked
    assert len(read_wav(out)[1]) == pytest.approx(clean_samples, rel=0.10)


@pytest.mark.parametrize("strategy", ["instruct", "prefill"])
@pytest.mark.parametrize("server", ["ignore", "repeat"])
def test_a_continuation_that_repeats_is_spliced(
    cli: Cli, fake: FakeOpenAI, strategy: str, server: str
) -> None:
    # The server ignores the text so far and starts over, or repeats its last word.
    fake.script = OpenAIScript(
        text=ANSWER, piece=5, faulty_requests=1, drop_after=12, resume=server
    )
    result = cli.run(
        "say", "q", "--source", "openai", "--null", **env(fake, VOICESTREAM_OPENAI_RESUME=strategy)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"


def test_a_stream_failing_on_every_resume_keeps_what_was_said(
    cli: Cli, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.script = OpenAIScript(text=ANSWER, piece=5, drop_after=12)
    metrics = tmp_path / "m.json"
    result = cli.run(
        "say", "q", "--source", "openai", "--out", str(tmp_path / "a.wav"), "--metrics",
        str(metrics), **env(fake, VOICESTREAM_OPENAI_MAX_RESUMES="2"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "dropped" in one_line(result.stderr) or "connect" in result.stderr
    assert len(fake.requests) == 3
    assert result.stdout.startswith(ANSWER[:60])
    assert json.loads(metrics.read_text())["source"]["resumes"] == 2
    assert read_wav(tmp_path / "a.wav")[1].size > 0


@pytest.mark.parametrize(("status", "tries"), [(429, 2), (503, 2), (401, 1), (404, 1)])
def test_errors_before_the_first_token(cli: Cli, fake: FakeOpenAI, status: int, tries: int) -> None:
    fake.script = OpenAIScript(status=status, error_message=f"no such thing for {KEY}")
    result = cli.run(
        "say", "q", "--source", "openai", "--null", **env(fake, VOICESTREAM_OPENAI_MAX_RETRIES="1")
    )
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"({status})" in line and "no such thing" in line
    assert KEY not in line + result.stdout and "[redacted]" in line
    assert len(fake.requests) == tries  # 429 and 5xx retried by the SDK, the others not


def test_an_answer_cut_at_max_tokens_says_so(cli: Cli, fake: FakeOpenAI) -> None:
    fake.script = OpenAIScript(text="A short answer that was cut", finish_reason="length")
    result = cli.run("say", "q", "--source", "openai", "--null", "--max-tokens", "9", **env(fake))
    assert result.returncode == 0
    assert result.stdout == "A short answer that was cut\n"
    assert "openai.max_tokens = 9" in one_line(result.stderr)
    assert fake.requests[0].body["max_tokens"] == 9


def test_only_content_is_spoken_and_usage_is_reported(
    cli: Cli, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.script = OpenAIScript(text="Only this is spoken.", reasoning=True)
    metrics = tmp_path / "m.json"
    result = cli.run(
        "say", "q", "--source", "openai", "--null", "--metrics", str(metrics),
        "--model", "gpt-4o", **env(fake),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Only this is spoken.\n"
    body = fake.requests[0].body
    assert body["model"] == "gpt-4o" and body["stream_options"] == {"include_usage": True}
    report = json.loads(metrics.read_text())["source"]
    assert report["input_tokens"] == 12 and report["output_tokens"] == 5
    assert report["cost_usd"] == pytest.approx((12 * 2.5 + 5 * 10) / 1e6)


def test_a_local_model_costs_nothing_and_needs_no_key(
    cli: Cli, fake: FakeOpenAI, tmp_path: Path
) -> None:
    metrics = tmp_path / "m.json"
    result = cli.run(
        "say",
        "q",
        "--null",
        "--metrics",
        str(metrics),
        "--model",
        "llama3.2",
        OPENAI_BASE_URL=fake.base_url,
    )  # fmt: skip — no --source: auto picks openai from OPENAI_BASE_URL
    assert result.returncode == 0, result.stderr
    assert json.loads(metrics.read_text())["source"]["cost_usd"] == 0
    headers = {k.lower(): v for k, v in fake.requests[0].headers.items()}
    assert headers["authorization"].startswith("Bearer ")  # a placeholder key


def test_the_calculator_by_function_calling_within_one_answer(
    cli: Cli, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.script = OpenAIScript(
        text="Let me work that out.", tool_call={"expression": "(3 + 4) * 6"}
    )
    metrics = tmp_path / "m.json"
    result = cli.run(
        "say", "q", "--source", "openai", "--null", "--metrics", str(metrics), **env(fake)
    )
    assert result.returncode == 0, result.stderr
    # Two requests, each with its usage: the answer's is their sum.
    report = json.loads(metrics.read_text())["source"]
    assert report["input_tokens"] == 12 + 12
    assert (
        report["output_tokens"]
        == len("Let me work that out.") // 4 + len("That gives the result: 42.") // 4
    )
    assert result.stdout == "Let me work that out. That gives the result: 42.\n"
    assert fake.requests[0].body["tools"][0]["function"]["name"] == "calculator"
    assistant, tool = fake.requests[1].body["messages"][-2:]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
        "expression": "(3 + 4) * 6"
    }  # assembled from pieces
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


def test_a_finish_reason_stays_when_a_later_chunk_has_none(cli: Cli, fake: FakeOpenAI) -> None:
    fake.script = OpenAIScript(
        text="A short answer that was cut", finish_reason="length", usage_with_choice=True
    )
    result = cli.run("say", "q", "--source", "openai", "--null", **env(fake))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "A short answer that was cut\n"
    assert "openai.max_tokens" in one_line(result.stderr) and len(fake.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_error_on_resuming_is_resumed_again(
    cli: Cli, fake: FakeOpenAI, status: int
) -> None:
    fake.scripts = [
        OpenAIScript(text=ANSWER, piece=5, drop_after=12),  # breaks mid-answer
        OpenAIScript(text=ANSWER, status=status),  # the resume is refused for a moment
        OpenAIScript(text=ANSWER, piece=5),
    ]
    result = cli.run(
        "say", "q", "--source", "openai", "--null",
        **env(fake, VOICESTREAM_OPENAI_MAX_RETRIES="0"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n" and len(fake.requests) == 3


def test_prefill_can_send_vllms_flag(cli: Cli, fake: FakeOpenAI) -> None:
    fake.script = OpenAIScript(text=ANSWER, piece=5, faulty_requests=1, drop_after=12)
    result = cli.run(
        "say", "q", "--source", "openai", "--null",
        **env(fake, VOICESTREAM_OPENAI_RESUME="prefill",
              VOICESTREAM_OPENAI_CONTINUE_FINAL_MESSAGE="1"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resumed = fake.requests[1].body
    assert resumed["continue_final_message"] is True and resumed["add_generation_prompt"] is False
    assert "continue_final_message" not in fake.requests[0].body


def test_without_key_or_url_the_openai_source_says_what_to_set(cli: Cli) -> None:
    result = cli.run("say", "q", "--source", "openai", "--null")
    assert result.returncode == 2
    assert "OPENAI_BASE_URL" in one_line(result.stderr)


def test_the_anthropic_source_works_with_a_server_under_a_path_like_ollamas(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    # Ollama and llama-server speak the Messages API too: ANTHROPIC_BASE_URL points there.
    result = cli.run(
        "say", "q", "--null", ANTHROPIC_API_KEY="ollama",
        ANTHROPIC_BASE_URL=fake_api.base_url + "/ollama",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert fake_api.requests[0].path == "/ollama/v1/messages"
    assert result.stdout == fake_api.script.text + "\n"


@pytest.mark.parametrize(
    ("said", "pieces", "heard"),
    [
        ("The answer is", [" forty", "-two."], " forty-two."),  # nothing repeated
        ("The answer is", ["The ans", "wer is forty-two."], " forty-two."),  # started over
        ("The answer is", ["is for", "ty-two."], " forty-two."),  # its last word again
        ("The answer is", ["swer"], "swer"),  # not from a word start: not a repeat
        ("The answer is", ["The"], "The"),  # never reached the end of what was said: new
        ("The answer is", ["is"], ""),  # the end of what was said, and nothing more
    ],
)
def test_splice_drops_a_repeated_beginning(said: str, pieces: list[str], heard: str) -> None:
    splice = Splice(said)
    assert "".join(splice.feed(p) for p in pieces) + splice.flush() == heard


def test_chat_with_the_openai_source_keeps_the_conversation(cli: Cli, fake: FakeOpenAI) -> None:
    fake.script = OpenAIScript(text="Paris is the capital.")
    result = cli.run(
        "chat", "--source", "openai", "--out", "answers", input="Capital of France?\nAnd Spain?\n",
        **env(fake),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Paris is the capital.\n\nParis is the capital.\n"  # apart
    messages = fake.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "Paris is the capital."


def test_the_tool_loop_is_bounded(cli: Cli, fake: FakeOpenAI) -> None:
    fake.script = OpenAIScript(text="Again.", tool_call={"expression": "1+1"}, tool_always=True)
    result = cli.run(
        "say",
        "q",
        "--source",
        "openai",
        "--null",
        **env(fake, VOICESTREAM_OPENAI_MAX_TOOL_ROUNDS="2"),
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.requests) == 3  # the question, then two tool rounds
    assert "stopped after 2 rounds" in one_line(result.stderr)


def test_a_refused_connection_is_one_line(cli: Cli) -> None:
    result = cli.run(
        "say", "q", "--source", "openai", "--null", OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        VOICESTREAM_OPENAI_MAX_RETRIES="0",
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not connect" in one_line(result.stderr)


@pytest.mark.parametrize("strategy", ["instruct", "prefill"])
async def test_a_source_resumed_from_text_said_elsewhere_writes_only_the_rest(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    from voicestream.config import OpenAIConfig
    from voicestream.sources.openai import OpenAISource

    for name, value in env(fake).items():
        monkeypatch.setenv(name, value)
    fake.script = OpenAIScript(text=ANSWER, piece=5, resume="repeat")
    said = ANSWER[:47]
    source = OpenAISource(OpenAIConfig(resume=strategy), "q", resume_from=said)
    rest = "".join([piece async for piece in source.stream()])
    assert said + rest == ANSWER  # its repeated last word spliced away
    (request,) = fake.requests
    assert {"role": "assistant", "content": said} in request.body["messages"]
