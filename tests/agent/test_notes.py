"""What kcode says to the model lives in prompts/loop/, is loaded from there, and ships in the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kcode.agent.notes import LOOP_NOTES, loop_note
from kcode.resources import resource_dir

SOURCE = Path(__file__).resolve().parents[2]


def _fields(name: str) -> dict[str, str]:
    return {key: f"<{key} value>" for key in LOOP_NOTES[name]}


def test_every_loop_note_is_a_prompt_file_and_every_file_a_note():
    folder = resource_dir("prompts") / "loop"
    assert sorted(path.stem for path in folder.glob("*.md")) == sorted(LOOP_NOTES)


@pytest.mark.parametrize("name", sorted(LOOP_NOTES))
def test_a_note_is_its_file_with_the_fields_filled_in(name):
    text = loop_note(name, **_fields(name))
    template = (resource_dir("prompts") / "loop" / f"{name}.md").read_text(encoding="utf-8").strip()
    for key, value in _fields(name).items():
        assert "{" + key + "}" in template and value in text
        template = template.replace("{" + key + "}", value)
    assert text == template and "{" not in text  # no placeholder left unfilled


def test_a_note_takes_exactly_its_fields():
    with pytest.raises(TypeError):
        loop_note("repeated_call")
    with pytest.raises(TypeError):
        loop_note("no_tool_call", count=3)


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
    assert {Path("loop") / f"{name}.md" for name in LOOP_NOTES} <= set(prompts)
    for relative in prompts:  # every prompt, the loop's notes among them, as in the source
        shipped = installed / "kcode" / "_bundled" / "prompts" / relative
        assert shipped.read_text(encoding="utf-8") == (SOURCE / "prompts" / relative).read_text(encoding="utf-8")
    probe = (
        "import json, kcode, kcode.agent.notes as notes\n"
        "print(json.dumps({'package': kcode.__file__, 'notes': {n: notes.loop_note(n, **{k: 'X' for k in f}) for n, f in notes.LOOP_NOTES.items()}}))"
    )
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    loaded = json.loads(out)
    assert loaded["package"].startswith(str(installed))  # the wheel's kcode, not the checkout's
    assert loaded["notes"] == {name: loop_note(name, **{key: "X" for key in LOOP_NOTES[name]}) for name in LOOP_NOTES}
