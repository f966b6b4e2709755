"""The buffer-policy benchmark's own machinery, on short answers, in virtual time.

Each figure the benchmark reports is checked here against a case whose answer is
known: timeouts where the network is small and the text channel fixed, underruns
where the engine is slow and the audio buffer fixed, memory where nothing bounds
it, waste where the listener stops early; and the summary's means and worsts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import Cli

from voicestream import bench

SHORT = bench.Scenario("short", 1200, 80)
NETWORK = 16 * 1024  # bytes: small, so that holding text back reaches the model


def run(name: str, scenario: bench.Scenario = SHORT, network: int = NETWORK) -> bench.Result:
    return bench.run_one(scenario, name, 3, network)


def test_a_loopback_connection_holds_far_more_than_a_few_tokens() -> None:
    held = bench.measure_network(idle_s=0.3)
    assert held > 64 * 1024  # the kernel's socket buffers: hundreds of kB to MB
    assert held // len(bench.sse_delta("abc")) > 500  # text deltas


def test_timeouts_are_counted_when_the_network_fills() -> None:
    adaptive, fixed = run("Adaptive"), run("Fixed(4)")
    assert fixed.producer_timeouts > 0 and fixed.longest_producer_wait_s > bench.STALL_BUDGET
    assert adaptive.producer_timeouts == 0
    assert adaptive.longest_producer_wait_s <= bench.STALL_BUDGET
    roomy = run("Fixed(4)", network=10 * 2**20)  # the same policy, a network that holds it all
    assert roomy.producer_timeouts == 0


def test_memory_is_what_each_policy_holds() -> None:
    adaptive, unbounded = run("Adaptive"), run("Unbounded")
    one_second = run("text unbounded, audio 1 s")
    assert adaptive.peak_memory_bytes * 3 < unbounded.peak_memory_bytes
    # A 1 s queue still holds a whole sentence's audio as it is made (8 s); the jitter
    # buffer's parts fit its room: 2 s and about a part.
    assert adaptive.peak_audio_bytes * 2 < one_second.peak_audio_bytes
    for r in (adaptive, unbounded, one_second):
        assert r.peak_memory_bytes <= r.peak_text_bytes + r.peak_audio_bytes
        assert r.peak_memory_bytes >= max(r.peak_text_bytes, r.peak_audio_bytes)


def test_a_slow_engine_underruns_a_lean_fixed_buffer_but_not_the_jitter_buffer() -> None:
    piper = dataclasses.replace(SHORT, engine="piper")
    adaptive, lean = run("Adaptive", piper), run("text unbounded, audio 1 s", piper)
    assert lean.underruns > 3 and lean.underrun_s > 0
    assert adaptive.underruns * 4 < lean.underruns  # learned from the engine speed
    assert adaptive.ttfa_s is not None and adaptive.ttfa_s < 1.5


def test_pacing_is_what_keeps_a_slow_engine_from_its_first_gap() -> None:
    piper = dataclasses.replace(SHORT, engine="piper")
    paced = [bench.run_one(piper, "Adaptive", seed, NETWORK) for seed in (1, 2, 3)]
    whole = [bench.run_one(piper, bench.WHOLE, seed, NETWORK) for seed in (1, 2, 3)]
    assert all(r.underruns >= 1 for r in whole)  # after the short first fragment
    assert sum(r.underrun_s for r in paced) < sum(r.underrun_s for r in whole) / 4
    # The price: a head start of at most half a second on the first audio.
    for p, w in zip(paced, whole, strict=True):
        assert p.ttfa_s is not None and w.ttfa_s is not None
        assert w.ttfa_s <= p.ttfa_s <= w.ttfa_s + 0.5 + 1e-9


def test_runs_are_deterministic() -> None:
    first, second = run("Adaptive"), run("Adaptive")
    assert dataclasses.astuple(first) == dataclasses.astuple(second)


def test_interruption_counts_what_was_made_for_nothing() -> None:
    scenario = dataclasses.replace(SHORT, stop_after_speech_s=3.0)
    adaptive, unbounded = run("Adaptive", scenario), run("Unbounded", scenario)
    # The model wrote ~0.4 + 3 + first audio seconds at 80 tokens/s; ~3 s were spoken.
    assert 200 < adaptive.wasted_tokens < 80 * 4
    assert adaptive.unplayed_audio_s > 0
    assert adaptive.unplayed_audio_s * 3 < unbounded.unplayed_audio_s
    assert adaptive.completion_s < 5


def result(policy: str, seed: int, **figures: float) -> bench.Result:
    base = bench.Result("s", policy, seed, 0, 0.0, 100, 10, 90, 0.4, 0, 0.0, 0, 0.0, 10.0)
    return dataclasses.replace(base, **figures)


def test_the_summary_gives_mean_and_worst_over_seeds() -> None:
    runs = [
        result("Adaptive", 1, underruns=0, peak_memory_bytes=100),
        result("Adaptive", 2, underruns=3, peak_memory_bytes=300),
    ]
    (summary,) = bench.summarize(runs)
    assert summary.seeds == 2
    assert summary.underruns_mean == 1.5 and summary.underruns_worst == 3
    assert summary.memory_mean == 200 and summary.memory_worst == 300


def test_targets_compare_with_the_best_baseline_that_is_as_good() -> None:
    runs = [
        result("Adaptive", 1, peak_memory_bytes=110),
        result("lean but late", 1, peak_memory_bytes=50, producer_timeouts=2),
        result("lean but gappy", 1, peak_memory_bytes=60, underruns=1),
        result("fair", 1, peak_memory_bytes=100),
        result("fat", 1, peak_memory_bytes=900),
    ]
    line = bench.targets(bench.summarize(runs)).splitlines()[-1]
    assert "(fair): 1.10x" in line


def test_policies_see_the_same_draws_of_the_model_and_of_the_engine() -> None:
    # Common random numbers: the engine's draws do not depend on how many the model
    # (or the network) took, so a policy that chunks differently still gets the same
    # synthesis times, call by call; another seed or scenario gets other draws.
    scenario = bench.SCENARIOS[0]
    model, engine = bench.draws(scenario, 3)
    [model.random() for _ in range(100)]
    _, engine_again = bench.draws(scenario, 3)
    assert [engine.random() for _ in range(5)] == [engine_again.random() for _ in range(5)]
    assert bench.draws(scenario, 3)[0].random() != bench.draws(scenario, 4)[0].random()
    assert bench.draws(scenario, 3)[1].random() != bench.draws(bench.SCENARIOS[1], 3)[1].random()
    tokens = [bench.token_texts(50, bench.draws(scenario, 3)[0]) for _ in range(2)]
    assert tokens[0] == tokens[1]


def test_targets_say_when_a_difference_is_within_the_seed_to_seed_spread() -> None:
    def line(ours: list[int], theirs: list[int]) -> str:
        runs = [result("Adaptive", seed, underruns=u) for seed, u in enumerate(ours)]
        runs += [result("base", seed, underruns=u) for seed, u in enumerate(theirs)]
        return bench.targets(bench.summarize(runs)).splitlines()[-1]

    # Seed by seed (both saw the same draws): a difference that flips sign from seed
    # to seed is chance; one seed after another worse is not.
    assert "(base) (within the spread)" in line([1, 0, 2, 0], [0, 1, 0, 1])  # 0.25 apart
    assert "within" not in line([1, 1, 2, 1], [0, 0, 1, 0])  # 1 apart, every seed
    assert "within" not in line([0, 0], [0, 0])  # no difference at all


@pytest.mark.parametrize("name", list(bench.policies()))
def test_every_policy_finishes_the_answer(name: str) -> None:
    r = run(name, dataclasses.replace(SHORT, tokens=300), network=10 * 2**20)
    assert r.producer_timeouts == 0 and r.ttfa_s is not None and r.completion_s > 10


def test_results_go_to_a_new_folder_unless_told_where(tmp_path: Path) -> None:
    first = bench.results_dir(None, tmp_path)
    second = bench.results_dir(None, tmp_path)
    assert first != second and first.parent == second.parent == tmp_path
    assert first.name.startswith("bench-") and first.is_dir() and second.is_dir()
    chosen = bench.results_dir(tmp_path / "mine" / "results", tmp_path)
    assert chosen == tmp_path / "mine" / "results" and chosen.is_dir()


def test_without_the_bench_extra_the_hint_names_it(cli: Cli) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        pytest.skip("matplotlib is installed here: the bench extra is not missing")
    done = cli.run("bench", "--seeds", "1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "voicestream[bench]" in done.stderr


def test_the_real_clock_bench_writes_its_figures_as_json(tmp_path: Path) -> None:
    from voicestream import bench_real

    out = tmp_path / "real.json"
    assert bench_real.main(["--sessions", "2,3", "--speech-s", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["sessions"] for row in rows] == [2, 3]
    for row in rows:
        assert set(row) == {
            "sessions", "rss_growth_mb", "underruns", "underrun_s", "first_audio_p50_s",
            "first_audio_p99_s", "cpu_s",
        }  # fmt: skip
        assert 0 < row["first_audio_p50_s"] <= row["first_audio_p99_s"] and row["cpu_s"] > 0
