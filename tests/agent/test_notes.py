"""What kcode says to the model lives in prompts/loop/ and prompts/compaction/, is loaded from
there, and ships in the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kcode.agent.compaction import HANDOFF_HEADER, CompactionPolicy, compact, mask_observations
from kcode.agent.notes import LOOP_NOTES, NOTES, compaction_note, loop_note, note_prefix, repair_note
from kcode.llm.scripted import ScriptedModel
from kcode.resources import resource_dir

SOURCE = Path(__file__).resolve().parents[2]


ALL_NOTES = sorted((folder, name) for folder, notes in NOTES.items() for name in notes)


def _fields(folder: str, name: str) -> dict[str, str]:
    return {key: f"<{key} value>" for key in NOTES[folder][name]}


def _fill(folder: str, name: str, **fields: object) -> str:
    return {"loop": loop_note, "compaction": compaction_note, "repair": repair_note}[folder](name, **fields)


@pytest.mark.parametrize("folder", sorted(NOTES))
def test_every_note_is_a_prompt_file_and_every_file_a_note(folder):
    assert sorted(path.stem for path in (resource_dir("prompts") / folder).glob("*.md")) == sorted(NOTES[folder])


@pytest.mark.parametrize(("folder", "name"), ALL_NOTES)
def test_a_note_is_its_file_with_the_fields_filled_in(folder, name):
    text = _fill(folder, name, **_fields(folder, name))
    template = (resource_dir("prompts") / folder / f"{name}.md").read_text(encoding="utf-8").strip()
    for key, value in _fields(folder, name).items():
        assert "{" + key + "}" in template and value in text
        template = template.replace("{" + key + "}", value)
    assert text == template and "{" not in text  # no placeholder left unfilled


def test_a_note_takes_exactly_its_fields():
    with pytest.raises(TypeError):
        loop_note("repeated_call")
    with pytest.raises(TypeError):
        loop_note("no_tool_call", count=3)
    with pytest.raises(TypeError):
        compaction_note("masked_output", chars=3)


def test_a_value_holding_braces_is_not_filled_in_again():
    text = loop_note("malformed_call", problems="- bash: expected {tools} here", tools="bash, finish")
    assert "- bash: expected {tools} here" in text and text.endswith("Available tools: bash, finish.")


def test_the_wheel_ships_the_notes_and_an_installed_kcode_loads_them(tmp_path):
    """Build a real wheel from a copy of the source, unpack it, and load every note from it."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(SOURCE / name, source / name)
    for folder in ("kcode", "prompts", "sandbox", "evals"):
        shutil.copytree(SOURCE / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True, capture_output=True)
    [wheel] = wheels.glob("kcode-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    prompts = sorted(path.relative_to(SOURCE / "prompts") for path in (SOURCE / "prompts").rglob("*.md"))
    assert {Path(folder) / f"{name}.md" for folder, name in ALL_NOTES} <= set(prompts)
    for relative in prompts:  # every prompt, the loop's notes among them, as in the source
        shipped = installed / "kcode" / "_bundled" / "prompts" / relative
        assert shipped.read_text(encoding="utf-8") == (SOURCE / "prompts" / relative).read_text(encoding="utf-8")
    probe = (
        "import json, kcode, kcode.agent.notes as notes\n"
        "fill = {'loop': notes.loop_note, 'compaction': notes.compaction_note, 'repair': notes.repair_note}\n"
        "print(json.dumps({'package': kcode.__file__, 'notes': {f'{d}/{n}': fill[d](n, **{k: 'X' for k in f})"
        " for d, table in notes.NOTES.items() for n, f in table.items()}}))"
    )
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    loaded = json.loads(out)
    assert loaded["package"].startswith(str(installed))  # the wheel's kcode, not the checkout's
    assert loaded["notes"] == {f"{folder}/{name}": _fill(folder, name, **{key: "X" for key in NOTES[folder][name]}) for folder, name in ALL_NOTES}
    assert len(loaded["notes"]) == len(ALL_NOTES) and LOOP_NOTES.keys() <= {key.split("/")[1] for key in loaded["notes"]}


def _long_conversation(steps: int) -> list[dict]:
    messages = [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "TASK"}]
    for n in range(steps):
        messages += [{"role": "assistant", "content": f"step {n}", "tool_calls": [{"id": str(n), "name": "bash", "arguments": {"command": f"echo {n}"}}]},
                     {"role": "tool", "tool_call_id": str(n), "name": "bash", "content": f"out {n}\n" + "x" * 400}]
    return messages


class _Recording(ScriptedModel):
    """A scripted model that keeps every request it is sent (a summary request among them)."""

    def __init__(self) -> None:
        super().__init__([], context_window=2000)
        self.requests: list[list[dict]] = []

    def stream(self, messages, tools, *, cancel=None):
        self.requests.append([dict(message) for message in messages])
        return super().stream(messages, tools, cancel=cancel)


def test_compaction_says_to_the_model_only_what_prompts_compaction_holds():
    """The summary request, the handoff note's framing and the masked outputs are the
    compaction notes, filled in."""
    model = _Recording()
    todo = [{"text": "fix it", "status": "in_progress"}]
    result = compact(_long_conversation(30), model, CompactionPolicy(context_window=2000, reserve_output=200, keep_last_messages=5), todo)
    [request] = model.requests
    assert request[0] == {"role": "system", "content": compaction_note("instructions")}
    summary_head, _ = compaction_note("summary_request", transcript="\0", plan="[~] fix it").split("\0")
    assert request[1]["content"].startswith(summary_head) and request[1]["content"].endswith("Current plan:\n[~] fix it")
    handoff = result.messages[2]["content"]
    assert handoff.startswith(HANDOFF_HEADER + "\n\n") and HANDOFF_HEADER == compaction_note("handoff_header")
    assert handoff.endswith("\n\n" + compaction_note("current_plan", plan="[~] fix it"))
    masked, count = mask_observations(_long_conversation(4), keep=1)
    stubs = [m["content"] for m in masked if m["role"] == "tool"][:3]
    assert count == 3 and stubs[0] == compaction_note("masked_output", chars=len("out 0\n") + 400, start=repr("out 0"))
    assert all(stub.startswith(note_prefix("compaction", "masked_output")) for stub in stubs)
    assert mask_observations(masked, keep=1) == (masked, 0)  # a masked output is not masked again


def test_a_summary_that_fails_leaves_the_mechanical_note():
    class Failing(ScriptedModel):
        def stream(self, messages, tools, *, cancel=None):
            return iter(())  # an empty answer: the model wrote no note

    result = compact(_long_conversation(30), Failing([], context_window=2000), CompactionPolicy(context_window=2000, reserve_output=200, keep_last_messages=5), [])
    head, _ = compaction_note("mechanical_summary", calls="\0").split("\0")
    assert result.strategy == "drop" and result.messages[2]["content"].startswith(HANDOFF_HEADER + "\n\n" + head)
    assert '- bash {"command": "echo 3"}' in result.messages[2]["content"]
