"""The buffer-policy benchmark's own machinery, on a short answer, in virtual time."""

from __future__ import annotations

import dataclasses

from voicestream import bench

SHORT = bench.Scenario("short", 1200, 80)


def run(name: str, scenario: bench.Scenario = SHORT) -> bench.Result:
    return bench.run_one(scenario, name, seed=3)


def test_adaptive_keeps_the_model_going_with_little_memory() -> None:
    adaptive, fixed, unbounded = run("Adaptive"), run("Fixed(4)"), run("Unbounded")
    assert adaptive.producer_timeouts == 0 < fixed.producer_timeouts
    assert adaptive.peak_memory_bytes * 3 < unbounded.peak_memory_bytes
    assert adaptive.underruns == 0
    assert adaptive.ttfa_s is not None and adaptive.ttfa_s < 1.0


def test_runs_are_deterministic() -> None:
    first, second = run("Adaptive"), run("Adaptive")
    assert dataclasses.astuple(first) == dataclasses.astuple(second)


def test_interruption_counts_what_was_made_for_nothing() -> None:
    scenario = dataclasses.replace(SHORT, stop_after_speech_s=3.0)
    adaptive, unbounded = run("Adaptive", scenario), run("Unbounded", scenario)
    assert adaptive.wasted_tokens > 0 and adaptive.unplayed_audio_s > 0
    assert adaptive.unplayed_audio_s * 3 < unbounded.unplayed_audio_s
    assert adaptive.completion_s < 5
