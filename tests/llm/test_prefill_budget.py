"""The pack budget chooser and the prefill-speed store, on recorded timings.

Recorded here (2 AMD EPYC cores, llama-cpp-python 0.3.36, CPU): Qwen2.5-Coder-1.5B Q4_K_M
prefills about 44 tok/s, the 0.5B about 140 tok/s; the fixed prompt is 1,119 tokens. Kimi K2.6
with its experts in RAM: 100-380 tok/s (REFERENCE.md), a 262,144-token window.
"""

from __future__ import annotations

from kcode.context import default_budget
from kcode.llm.prefill import EMA_WEIGHT, MIN_PACK_BUDGET, PrefillSpeed, SpeedStore, choose_pack_budget, speed_key

FIXED = 1119
QWEN_WINDOW = default_budget(32_768, 0.4)  # 13,107
K26_WINDOW = default_budget(262_144, 0.4)  # 104,857


def test_a_slow_cpu_model_gets_what_prefills_in_the_time_budget():
    budget = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=44.0,
                                first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=True, other_tokens=60)
    assert budget.reason == "time" and budget.tokens == 44 * 20 - 60 == 820
    assert budget.why == "time: 20 s at 44 tok/s"
    assert budget.prefill_seconds() == 20.0 and budget.prefill_seconds(400) == round(460 / 44, 1)
    loaded = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=44.0,
                                first_step_seconds=20, spent_seconds=2.5, fixed_tokens=FIXED, fixed_cached=True,
                                other_tokens=60)
    assert loaded.tokens == int(44 * 17.5) - 60 and loaded.why == "time: 20 s at 44 tok/s, 2.5 s of it loading and packing"


def test_an_uncached_fixed_prompt_counts_against_the_time():
    budget = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=140.0,
                                first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=False, other_tokens=60)
    assert budget.tokens == 2800 - FIXED - 60 and ", after the 1119-token fixed prompt" in budget.why
    assert budget.prefill_seconds() == 20.0
    # a fresh install on the 1.5B model: the fixed prompt alone takes longer than the budget
    fresh = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=44.0,
                               first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=False, other_tokens=60)
    assert fresh.tokens == MIN_PACK_BUDGET and "at least" in fresh.why


def test_what_the_cache_restores_is_free():
    warm = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=44.0,
                              first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=True, other_tokens=60,
                              restored_tokens=1500)
    assert warm.tokens == 1500 and "the 1500 cached pack tokens kept" in warm.why
    assert warm.prefill_seconds() == round(60 / 44, 1)  # only the task and the header remain
    smaller = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=44.0,
                                 first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=True, other_tokens=60,
                                 restored_tokens=300)
    assert smaller.tokens == 820  # the time budget is much larger: re-pack at that size
    jitter = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=46.0,
                                first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=True, other_tokens=60,
                                restored_tokens=820)
    assert jitter.tokens == 820  # a slightly faster measurement does not change the pack (and lose the cache)


def test_a_fast_backend_or_an_unknown_speed_gets_the_window_share():
    fast = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=5000.0,
                              first_step_seconds=20, fixed_tokens=FIXED, other_tokens=60)
    assert (fast.reason, fast.tokens, fast.why) == ("window", QWEN_WINDOW, "window share 40 %")
    unknown = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4)
    assert unknown.reason == "window" and unknown.prefill_seconds() is None
    assert "not measured" in unknown.why
    flag = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, override=3000, tokens_per_second=44.0,
                              fixed_tokens=FIXED, fixed_cached=True, other_tokens=60)
    assert (flag.reason, flag.tokens, flag.why) == ("flag", 3000, "--pack-budget")
    assert flag.prefill_seconds() == round(3060 / 44, 1)


def test_kimi_k26_at_100_to_380_tokens_per_second():
    for speed, expected in ((100.0, 2000 - 60), (380.0, 7600 - 60)):
        budget = choose_pack_budget(window_tokens=K26_WINDOW, window_share=0.4, tokens_per_second=speed,
                                    first_step_seconds=20, fixed_tokens=FIXED, fixed_cached=True, other_tokens=60)
        assert budget.reason == "time" and budget.tokens == expected and budget.prefill_seconds() == 20.0
    # today's window-share pack at the same speeds: 100K tokens, 4.6 to 17.5 minutes
    window = choose_pack_budget(window_tokens=K26_WINDOW, window_share=0.4, override=K26_WINDOW,
                                tokens_per_second=100.0, fixed_tokens=FIXED, fixed_cached=True, other_tokens=60)
    assert window.prefill_seconds() > 1000


def test_step_timings_refresh_the_stored_speed_as_an_average(tmp_path):
    store = SpeedStore(tmp_path / "speed.json")
    key = speed_key("model.gguf:abc", {"n_batch": 512, "n_threads": 2, "n_ctx": 4096})
    assert key == speed_key("model.gguf:abc", {"n_threads": 2, "n_batch": 512, "n_ctx": 32768})  # n_ctx aside
    assert key != speed_key("model.gguf:abc", {"n_batch": 256, "n_threads": 2})
    assert store.record(key, 256, 256 / 44.0, "calibration").tokens_per_second == 44.0
    # recorded steps of a 1.5B run: 1,837 tokens in 44.1 s, 96 in 2.0 s, 11 in 0.3 s (too few to count)
    after = store.record(key, 1837, 44.1, "steps")
    assert after.samples == 2 and after.source == "steps"
    assert abs(after.tokens_per_second - ((1 - EMA_WEIGHT) * 44.0 + EMA_WEIGHT * 1837 / 44.1)) < 1e-9
    again = store.record(key, 96, 2.0, "steps")
    assert again.samples == 3
    assert store.record(key, 11, 0.3, "steps") == again
    reloaded = SpeedStore(tmp_path / "speed.json").get(key)
    assert reloaded == again and isinstance(reloaded, PrefillSpeed)
    assert store.record(key, 512, 4.0, "calibration").tokens_per_second == 128.0  # bench replaces it


def test_a_part_for_the_task_prefills_within_the_next_steps_time():
    """1.5B at 44 tok/s: 2 s hold only the task itself, so the whole pack is task-independent;
    K2.6 at 380 tok/s: 2 s hold 700 tokens for the task, after a cached task-independent part."""
    small = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=44.0,
                               first_step_seconds=20, next_step_seconds=2, fixed_tokens=FIXED, fixed_cached=True,
                               other_tokens=60)
    assert small.task_tokens == 0 and small.stable_tokens == small.tokens == 820  # 88 - 60 < MIN_TASK_PART
    first = choose_pack_budget(window_tokens=K26_WINDOW, window_share=0.4, tokens_per_second=380.0,
                               first_step_seconds=20, next_step_seconds=2, fixed_tokens=FIXED, fixed_cached=True,
                               other_tokens=60)
    assert (first.tokens, first.task_tokens, first.stable_tokens) == (7540, 700, 6840)
    assert first.prefill_seconds() == 20.0 and "700 for this task (2 s)" in first.why
    warm = choose_pack_budget(window_tokens=K26_WINDOW, window_share=0.4, tokens_per_second=380.0,
                              first_step_seconds=20, next_step_seconds=2, fixed_tokens=FIXED, fixed_cached=True,
                              other_tokens=60, restored_tokens=first.stable_tokens)
    assert warm.tokens == first.tokens and warm.prefill_seconds() == 2.0  # the next run, another task
    # a model that takes 1.6 s to load leaves 0.4 s of the 2: at 380 tok/s, 91 tokens for the task
    loading = choose_pack_budget(window_tokens=K26_WINDOW, window_share=0.4, tokens_per_second=380.0,
                                 first_step_seconds=20, next_step_seconds=2, spent_seconds=1.6, fixed_tokens=FIXED,
                                 fixed_cached=True, other_tokens=60)
    assert loading.task_tokens == int(380 * (2 - 1.6)) - 60 == 91


def test_the_budget_is_planned_at_a_share_of_the_measured_speed():
    """The pack is prefilled after the fixed prompt, deeper in the context than most of the
    measurements were taken (the 1.5B model: 64 tok/s over the fixed prompt, 55-57 after it)."""
    planned = choose_pack_budget(window_tokens=QWEN_WINDOW, window_share=0.4, tokens_per_second=64.0,
                                 first_step_seconds=20, spent_seconds=3.0, fixed_tokens=FIXED, fixed_cached=True,
                                 other_tokens=60, speed_share=0.85)
    assert planned.tokens == int(64 * 0.85 * 17) - 60 == 864
    assert planned.why == "time: 20 s at 54 tok/s (85 % of the 64 measured), 3.0 s of it loading and packing"
    assert planned.tokens_per_second == 64 * 0.85 and planned.prefill_seconds() == 17.0
    # at 55 tok/s, what the 1.5B model does there, the first token still comes within 20 s
    assert 3.0 + (planned.tokens + 60) / 55 <= 20
