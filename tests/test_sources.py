"""The sources: demo timing (virtual time), stdin as it arrives, the Anthropic API on loopback."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import Cli, wrote
from test_faults import ANSWER, FAST_RESUME, FAULT_IDS, FAULTS, KEY, api_env
from wavcheck import read_wav, voiced_fraction

from voicestream.config import DemoConfig
from voicestream.sources.demo import DemoSource, demo_answer
from voicestream.testing import FakeAnthropic, Script, wait_for


async def test_demo_streams_with_a_models_timing(clock: trio.testing.MockClock) -> None:
    source = DemoSource(DemoConfig(first_token_s=0.4, tokens_per_s=60.0, seed=7))
    arrivals: list[tuple[float, str]] = []
    async for token in source.stream():
        arrivals.append((trio.current_time(), token))
    assert "".join(t for _, t in arrivals) == demo_answer()
    assert arrivals[0][0] == pytest.approx(0.4)
    assert {len(t) for _, t in arrivals} == set(range(1, 7)) | ({len(arrivals[-1][1])})
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(arrivals)]
    rate = len(gaps) / sum(gaps)
    assert 55 < rate < 65
    assert min(gaps) < 0.6 / 60 and max(gaps) > 1.4 / 60  # jitter, not a metronome


async def test_demo_with_a_seed_repeats_exactly() -> None:
    async def tokens(seed: int) -> list[str]:
        config = DemoConfig(first_token_s=0, tokens_per_s=1e6, seed=seed)
        return [t async for t in DemoSource(config).stream()]

    assert await tokens(3) == await tokens(3) != await tokens(4)


def test_stdin_is_spoken_as_it_arrives_not_after_eof(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "a.wav"
    process = cli.popen("say", "-", "--out", str(out))
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"The first sentence comes in pieces")
    process.stdin.flush()
    time.sleep(0.2)
    process.stdin.write(b", with a pause. Then")
    process.stdin.flush()
    # Printed and synthesized while stdin is still open.
    assert (
        process.stdout.read(len("The first sentence comes in pieces"))
        == b"The first sentence comes in pieces"
    )
    wait_for(lambda: out.stat().st_size > 44 + 22050)
    assert process.poll() is None
    process.stdin.write(" the end. Ünïcödé ✓".encode())
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    rest = process.stdout.read().decode()
    assert rest == ", with a pause. Then the end. Ünïcödé ✓\n"
    rate, samples = read_wav(out)
    assert voiced_fraction(samples, rate) > 0.5


def test_stdin_split_inside_a_utf8_character_is_decoded(cli: Cli) -> None:
    process = cli.popen("say", "-", "--null", "--engine", "silent")
    assert process.stdin is not None and process.stdout is not None
    first = "First sentence. Gr"
    data = "ü".encode()
    process.stdin.write(first.encode() + data[:1])  # ends in the middle of "ü"
    process.stdin.flush()
    # Echoed back: the first read is over, so the rest of "ü" comes in another read.
    assert process.stdout.read(len(first)) == first.encode()
    process.stdin.write(data[1:] + "ße aus Köln.".encode())
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert (first.encode() + out).decode() == "First sentence. Grüße aus Köln.\n"


def test_anthropic_answer_is_printed_and_spoken(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    answer = "Paris is the capital of France. It lies on the Seine, in the north of the country."
    fake_api.script = Script(text=answer, piece=3, delay_s=0.005)
    config = tmp_path / "my.toml"
    config.write_text(
        '[anthropic]\nmodel = "claude-test-model"\nmax_tokens = 77\nsystem = "Be brief."\n'
    )
    out, metrics = tmp_path / "a.wav", tmp_path / "m.json"
    result = cli.run(
        "say", "What is the capital of France?", "--config", str(config),
        "--out", str(out), "--metrics", str(metrics), **api_env(fake_api),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == answer + "\n"
    assert result.stderr == wrote(out, result.stderr)  # and nothing else
    (request,) = fake_api.requests
    assert request.path == "/v1/messages"
    assert request.body["model"] == "claude-test-model" and request.body["max_tokens"] == 77
    assert request.body["system"] == "Be brief." and request.body["stream"] is True
    assert request.body["messages"] == [
        {"role": "user", "content": "What is the capital of France?"}
    ]
    # The SDK itself read the variables: the key went to the loopback server.
    assert any(KEY in value for value in request.headers.values())
    rate, samples = read_wav(out)
    assert voiced_fraction(samples, rate) > 0.5
    figures = json.loads(metrics.read_text())
    assert KEY not in metrics.read_text()
    assert figures["tokens"] == len(range(0, len(answer), 3)) and figures["chunks"] == 2
    assert 0 < figures["ttft_s"] < figures["ttfa_s"]


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
@pytest.mark.parametrize("cut", [12, 14], ids=["mid-word", "after-a-space"])
def test_a_broken_stream_is_resumed_and_the_answer_heard_once(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path, fault: dict[str, object], cut: int
) -> None:
    fault = {k: (cut if k.endswith("_after") else v) for k, v in fault.items()}
    fake_api.script = Script(text=ANSWER, piece=5, faulty_requests=1, **fault)  # type: ignore[arg-type]
    clean, out = tmp_path / "clean.wav", tmp_path / "resumed.wav"
    result = cli.run("say", "question", "--out", str(out), **api_env(fake_api), **FAST_RESUME)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"  # nothing said twice, nothing skipped
    assert result.stderr == wrote(out, result.stderr)  # and nothing else
    first, second = fake_api.requests
    prefill = second.body["messages"][-1]
    assert prefill["role"] == "assistant" and prefill["content"] == ANSWER[: 5 * cut].rstrip()
    assert second.body["messages"][:-1] == first.body["messages"]
    fake_api.script = Script(text=ANSWER, piece=5)
    assert cli.run("say", "question", "--out", str(clean), **api_env(fake_api)).returncode == 0
    _, resumed = read_wav(out)
    _, reference = read_wav(clean)
    assert len(resumed) == pytest.approx(len(reference), rel=0.10)


def test_an_answer_cut_at_max_tokens_says_so(cli: Cli, fake_api: FakeAnthropic) -> None:
    text = "A short answer that was cut at the limit"
    fake_api.script = Script(text=text, stop_reason="max_tokens")
    result = cli.run("say", "question", "--null", "--max-tokens", "9", **api_env(fake_api))
    assert result.returncode == 0
    assert result.stdout == text + "\n"
    assert "max_tokens = 9" in result.stderr and result.stderr.count("\n") == 1
    assert fake_api.requests[0].body["max_tokens"] == 9


def test_model_and_system_flags_reach_the_request(cli: Cli, fake_api: FakeAnthropic) -> None:
    result = cli.run(
        "say", "q", "--null", "--model", "claude-x", "--system", "Be terse.", **api_env(fake_api)
    )
    assert result.returncode == 0, result.stderr
    body = fake_api.requests[0].body
    assert body["model"] == "claude-x" and body["system"] == "Be terse."


def test_thinking_and_tool_use_are_never_read_aloud(cli: Cli, fake_api: FakeAnthropic) -> None:
    fake_api.script = Script(text="Only this is spoken.", other_blocks=True)
    result = cli.run("say", "q", "--null", **api_env(fake_api))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Only this is spoken.\n"


def test_metrics_report_usage_and_cost_but_never_the_key(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    metrics = tmp_path / "m.json"
    result = cli.run("say", "q", "--null", "--metrics", str(metrics), **api_env(fake_api))
    assert result.returncode == 0, result.stderr
    report = json.loads(metrics.read_text())["source"]
    assert report["input_tokens"] == 12 and report["cache_read_input_tokens"] == 7
    assert report["output_tokens"] > 0
    assert report["cost_usd"] == pytest.approx((12 * 3 + report["output_tokens"] * 15) / 1e6)
    assert KEY not in metrics.read_text()


def test_a_long_system_prompt_is_sent_for_caching(cli: Cli, fake_api: FakeAnthropic) -> None:
    long_prompt = "Speak plainly and briefly. " * 200
    for system in ("Short.", long_prompt):
        assert (
            cli.run("say", "q", "--null", "--system", system, **api_env(fake_api)).returncode == 0
        )
    short, long = (r.body["system"] for r in fake_api.requests)
    assert short == "Short."
    assert long == [{"type": "text", "text": long_prompt, "cache_control": {"type": "ephemeral"}}]


def test_cost_guard_refuses_before_any_generation(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    result = cli.run("say", "q", "--null", "--max-cost", "0.001", **api_env(fake_api))
    assert result.returncode == 2
    line = result.stderr
    assert line.count("\n") == 1 and "1024 output tokens" in line
    found = re.search(r"cost \$([\d.]+) \((\d+) input tokens", line)
    assert found, line
    cost, tokens = float(found[1]), int(found[2])
    assert cost == pytest.approx((tokens * 3 + 1024 * 15) / 1e6, abs=1e-4) and cost > 0.001
    assert [r.path for r in fake_api.requests] == ["/v1/messages/count_tokens"]
    allowed = cli.run("say", "q", "--null", "--max-cost", "1", **api_env(fake_api))
    assert allowed.returncode == 0, allowed.stderr
    assert fake_api.requests[-1].path == "/v1/messages"


def test_overloaded_before_the_first_token_is_retried_then_one_line(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    fake_api.script = Script(status=529, error_type="overloaded_error", error_message="Overloaded")
    result = cli.run(
        "say", "q", "--null", **api_env(fake_api), VOICESTREAM_ANTHROPIC_MAX_RETRIES="1"
    )
    assert result.returncode == 1
    assert "overloaded (529)" in result.stderr and result.stderr.count("\n") == 1
    assert len(fake_api.requests) == 2  # the SDK's retry


def test_refused_key_is_not_retried(cli: Cli, fake_api: FakeAnthropic) -> None:
    fake_api.script = Script(status=401, error_type="authentication_error", error_message="bad key")
    result = cli.run("say", "q", "--null", **api_env(fake_api))
    assert result.returncode == 1 and "bad key" in result.stderr
    assert len(fake_api.requests) == 1


def test_connection_refused_is_one_line(cli: Cli) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    result = cli.run("say", "q", "--null", **env, VOICESTREAM_ANTHROPIC_MAX_RETRIES="0")
    assert result.returncode == 1
    assert "could not connect" in result.stderr and result.stderr.count("\n") == 1


def test_a_stalled_stream_times_out_and_is_resumed(cli: Cli, fake_api: FakeAnthropic) -> None:
    fake_api.script = Script(text=ANSWER, piece=5, stall_after=12, stall_s=3, faulty_requests=1)
    quick = {"VOICESTREAM_ANTHROPIC_TIMEOUT_S": "0.5", **FAST_RESUME}
    result = cli.run("say", "q", "--null", "--engine", "silent", **api_env(fake_api), **quick)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"
    assert len(fake_api.requests) == 2


def test_the_calculator_answers_the_model_within_one_spoken_answer(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    fake_api.script = Script(text="Let me work that out.", tool_call={"expression": "(3 + 4) * 6"})
    result = cli.run("say", "What is seven times six?", "--null", **api_env(fake_api))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Let me work that out. That gives the result: 42.\n"
    first, second = fake_api.requests
    assert first.body["tools"][0]["name"] == "calculator"
    assistant, tool_result = second.body["messages"][1:]
    assert assistant["content"][0] == {"type": "text", "text": "Let me work that out."}
    assert assistant["content"][1]["input"] == {"expression": "(3 + 4) * 6"}
    assert tool_result["content"][0]["content"] == "42"


@pytest.mark.parametrize(
    ("name", "tool_input", "error"),
    [
        ("calculator", {"expression": "__import__('os').system('true')"}, "not allowed"),
        ("calculator", {"expr": "1+1"}, "needs"),
        ("weather", {"city": "Paris"}, "unknown tool"),
        ("calculator", {"expression": "9 ** 9 ** 9"}, "exponents"),
    ],
)
def test_bad_tool_calls_give_the_model_an_error_not_a_crash(
    cli: Cli, fake_api: FakeAnthropic, name: str, tool_input: dict[str, str], error: str
) -> None:
    fake_api.script = Script(text="Checking.", tool_call=tool_input, tool_name=name)
    result = cli.run("say", "q", "--null", **api_env(fake_api))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Checking. That gives an error:")
    sent = fake_api.requests[1].body["messages"][-1]["content"][0]
    assert sent["is_error"] is True and error in sent["content"]


def test_the_tool_loop_is_bounded(cli: Cli, fake_api: FakeAnthropic) -> None:
    fake_api.script = Script(text="Again.", tool_call={"expression": "1+1"}, tool_always=True)
    result = cli.run(
        "say", "q", "--null", **api_env(fake_api), VOICESTREAM_ANTHROPIC_MAX_TOOL_ROUNDS="2"
    )
    assert result.returncode == 0, result.stderr
    assert len(fake_api.requests) == 3
    assert "stopped after 2 rounds" in result.stderr and result.stderr.count("\n") == 1


def test_a_bad_model_is_one_line_with_the_apis_message(cli: Cli, fake_api: FakeAnthropic) -> None:
    fake_api.script = Script(
        status=400, error_type="invalid_request_error", error_message="model: not-a-model"
    )
    result = cli.run("say", "q", "--null", "--model", "not-a-model", **api_env(fake_api))
    assert result.returncode == 1
    assert "(400): model: not-a-model" in result.stderr and result.stderr.count("\n") == 1
    assert len(fake_api.requests) == 1  # not retried


async def test_the_loopback_server_refuses_a_prefill_ending_in_whitespace(
    fake_api: FakeAnthropic,
) -> None:
    import anthropic

    client = anthropic.AsyncAnthropic(api_key="k", base_url=fake_api.base_url, max_retries=0)
    try:
        messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Hello "}]
        with pytest.raises(anthropic.BadRequestError, match="trailing whitespace"):
            await client.messages.create(model="m", max_tokens=5, messages=messages)  # type: ignore[arg-type]
    finally:
        await client.close()


@pytest.mark.parametrize(
    "script",
    [
        Script(text=ANSWER, piece=5, faulty_requests=1, drop_after=12),
        Script(text="Let me work that out.", tool_call={"expression": "6 * 7"}),
    ],
    ids=["resume", "tool-round"],
)
def test_usage_is_summed_over_every_request_of_an_answer(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path, script: Script
) -> None:
    fake_api.script = script
    metrics = tmp_path / "m.json"
    result = cli.run(
        "say", "q", "--null", "--metrics", str(metrics), **api_env(fake_api), **FAST_RESUME
    )
    assert result.returncode == 0, result.stderr
    assert len(fake_api.requests) == 2
    report = json.loads(metrics.read_text())["source"]
    # Each request is billed 12 input tokens (7 of them read from the cache).
    assert report["input_tokens"] == 24 and report["cache_read_input_tokens"] == 14


@pytest.mark.parametrize("cut", [47, 48], ids=["mid-word", "after-a-space"])
async def test_a_source_resumed_from_text_said_elsewhere_writes_only_the_rest(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    # What a server process taking over a dead one's answer asks for: the text so far
    # goes as the prefill (without its trailing space, which the API refuses) and
    # only what follows it comes out, spaced as the model writes it.
    from voicestream.config import AnthropicConfig
    from voicestream.sources.anthropic import AnthropicSource

    for name, value in api_env(fake_api).items():
        monkeypatch.setenv(name, value)
    fake_api.script = Script(text=ANSWER, piece=5)
    said = ANSWER[:cut]
    source = AnthropicSource(AnthropicConfig(), "q", resume_from=said)
    rest = "".join([piece async for piece in source.stream()])
    assert said + rest == ANSWER
    (request,) = fake_api.requests
    assert request.body["messages"][-1] == {"role": "assistant", "content": said.rstrip()}
