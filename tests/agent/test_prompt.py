from __future__ import annotations

from kcode.agent.prompt import AGENTS_MD_LIMIT, build_system_prompt, read_agents_md
from kcode.agent.runner import run_task
from kcode.config import Config
from kcode.events import MessageAdded

from tests.conftest import git


def test_agents_md_root_to_leaf(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "AGENTS.md").write_text("root rules")
    (tmp_path / "a" / "b" / "AGENTS.md").write_text("leaf rules")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "AGENTS.md").write_text("not on the path")
    text = read_agents_md(tmp_path, tmp_path / "a" / "b")
    assert text.index("root rules") < text.index("leaf rules") and "not on the path" not in text
    assert read_agents_md(tmp_path, tmp_path) .count("rules") == 1


def test_agents_md_is_capped(tmp_path):
    (tmp_path / "AGENTS.md").write_text("x" * (AGENTS_MD_LIMIT * 2))
    text = read_agents_md(tmp_path)
    assert len(text.encode()) < AGENTS_MD_LIMIT + 200 and text.endswith(f"[AGENTS.md truncated at {AGENTS_MD_LIMIT} bytes]")


def test_system_prompt_includes_agents_md_and_pack():
    prompt = build_system_prompt(repo_name="demo", agents_md="Use tabs.", repo_pack="<file path=\"a.py\">\n</file>")
    assert "`demo`" in prompt and "Use tabs." in prompt and '<file path="a.py">' in prompt
    assert "AGENTS.md" not in build_system_prompt(repo_name="demo")


def test_run_from_a_subdirectory_reads_its_agents_md(calc_repo, fix_script):
    (calc_repo / "AGENTS.md").write_text("Always run the tests.")
    (calc_repo / "calc" / "AGENTS.md").write_text("calc: keep functions pure.")
    git(calc_repo, "add", "-A")
    git(calc_repo, "commit", "-qm", "agents")
    events = []
    run_task("fix", Config(model=f"scripted:{fix_script}"), repo=calc_repo, cwd=calc_repo / "calc", subscribers=[events.append])
    system = next(e.message["content"] for e in events if isinstance(e, MessageAdded))
    assert "Always run the tests." in system and "calc: keep functions pure." in system
