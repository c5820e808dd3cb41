from __future__ import annotations

from kcode.agent.guards import LoopGuard, canonical_call


def run(guard, calls, malformed=0, progressed=False, start=1):
    return [guard.observe(start + i, [c] if c else [], malformed, progressed) for i, c in enumerate(calls)]


def test_canonical_call_ignores_key_order():
    assert canonical_call("a", {"x": 1, "y": 2}) == canonical_call("a", {"y": 2, "x": 1})


def test_repeat_warnings_at_3_5_8_and_forced_change_at_12():
    verdicts = run(LoopGuard(stuck_steps=1000), ["read:x"] * 12)
    warned = [i + 1 for i, v in enumerate(verdicts) if v.notes and not v.force_change]
    assert warned == [3, 5, 8]
    assert [i + 1 for i, v in enumerate(verdicts) if v.force_change] == [12]
    again = run(LoopGuard(stuck_steps=1000), ["read:x"] * 2 + ["read:y"] + ["read:x"] * 2)
    assert not any(v.notes for v in again)


def test_alternation_over_six_steps():
    verdicts = run(LoopGuard(stuck_steps=1000), ["a", "b"] * 3)
    assert "alternating between the same 2" in verdicts[-1].notes[0]
    triples = run(LoopGuard(stuck_steps=1000), ["a", "b", "c"] * 2)
    assert "same 3" in triples[-1].notes[0]
    varied = run(LoopGuard(stuck_steps=1000), ["a", "b", "c", "d", "a", "b"])
    assert not any(v.notes for v in varied)


def test_three_malformed_in_a_row_resend_the_format():
    guard = LoopGuard(stuck_steps=1000)
    assert [guard.observe(i, [], 1, False).resend_format for i in range(1, 4)] == [False, False, True]
    assert not guard.observe(4, ["ok"], 0, False).resend_format


def test_no_progress_nudges_then_stops():
    guard = LoopGuard(stuck_steps=3)
    verdicts = run(guard, ["a", "b", "c", "d", "e", "f"])
    assert "No file has changed" in verdicts[2].notes[0]
    assert verdicts[5].stop and "no progress for 6 steps" in verdicts[5].stop
    fresh = LoopGuard(stuck_steps=3)
    run(fresh, ["a", "b"])
    assert not run(fresh, ["c"], progressed=True, start=3)[0].notes


def test_state_round_trip():
    guard = LoopGuard()
    run(guard, ["x"] * 4)
    copy = LoopGuard()
    copy.restore(guard.state())
    assert copy.observe(5, ["x"], 0, False).notes  # streak 5 continues after a resume


def test_a_call_made_again_without_progress_has_its_tool_withheld_for_two_steps():
    guard = LoopGuard(stuck_steps=1000)
    write = canonical_call("write_file", {"path": "a.py", "content": "x|y"})
    edit = canonical_call("edit_file", {"path": "a.py", "old": "x", "new": "y"})
    search = canonical_call("repo_map", {"query": "IDNAError"})
    run(guard, [write])
    assert guard.repeated_tools() == set()
    run(guard, [write], start=2)
    assert guard.repeated_tools() == {"write_file"}
    copy = LoopGuard()
    copy.restore(guard.state())
    assert copy.repeated_tools() == {"write_file"}  # a resumed run withholds it too
    run(guard, [search], start=3)
    assert guard.repeated_tools() == {"write_file"}  # two steps
    run(guard, [edit], start=4)
    assert guard.repeated_tools() == set()
    # A B A B: each repeat withholds its tool for two steps, so the loop loses both at once
    run(guard, [write], start=5)
    assert guard.repeated_tools() == {"write_file"}
    run(guard, [edit], start=6)
    assert guard.repeated_tools() == {"write_file", "edit_file"}
    guard.observe(7, [search], 0, True)  # progress (a file changed, new test results): a clean slate
    assert guard.repeated_tools() == set()
    guard.observe(8, [write], 0, False)
    assert guard.repeated_tools() == set()
    two = [canonical_call("search", {"q": "a"}), canonical_call("read_file", {"path": "b"})]
    guard.observe(9, two, 0, False)
    guard.observe(10, two, 0, False)
    assert guard.repeated_tools() == {"search", "read_file"}


def test_a_three_call_cycle_loses_all_its_tools_at_once():
    """A B C A B C A B C (the 1.5B on cachetools: repo_map, search, a refused write_file):
    each further repeat withholds its tool longer, so the cycle cannot go on."""
    guard = LoopGuard(stuck_steps=1000)
    cycle = [canonical_call("repo_map", {"query": "LRUCache"}), canonical_call("search", {"pattern": "x"}),
             canonical_call("write_file", {"path": "a.py", "content": "y"})]
    withheld = []
    for step in range(1, 10):
        guard.observe(step, [cycle[(step - 1) % 3]], 0, False)
        withheld.append(guard.repeated_tools())
    assert withheld[3:6] == [{"repo_map"}, {"repo_map", "search"}, {"search", "write_file"}]  # first repeats: 2 steps
    assert withheld[6:] == [{"write_file", "repo_map"}, {"repo_map", "search"}, {"repo_map", "search", "write_file"}]
