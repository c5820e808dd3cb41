"""``kcode skills list|show|save``: the skills a run here would load, one of them, and a
finished session distilled into a new one (kcode.skills, kcode.agent.skill_save)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app"]

app = typer.Typer(name="skills", help="List, show and save skills (agentskills.io SKILL.md folders).", no_args_is_help=True)

RepoOption = Annotated[Path | None, typer.Option("--repo", help="The git repository (default: the current directory's).")]


def _fail(message: str, code: int) -> None:
    typer.echo(f"kcode: error: {message}", err=True)
    raise typer.Exit(code)


def _root(repo: Path | None) -> Path | None:
    """The repository around ``repo`` (or the current directory); ``None`` outside one, where
    only the user's skills count — unless ``--repo`` named it."""
    from kcode.errors import KcodeError
    from kcode.vcs import repo_root

    try:
        return repo_root(repo or Path.cwd())
    except KcodeError as error:
        if repo is not None:
            _fail(str(error), 2)
        return None


def _discover(repo: Path | None) -> tuple[Path | None, Any]:
    from kcode.skills import discover_skills

    root = _root(repo)
    found = discover_skills(root)
    for line in found.notices():
        typer.echo(f"kcode: warning: {line}", err=True)
    return root, found


@app.command("list")
def list_skills(repo: RepoOption = None) -> None:
    """The skills a run here loads: name, source, SKILL.md, description (invalid ones: warnings on stderr)."""
    from kcode.skills import skill_location

    root, found = _discover(repo)
    for hidden, winner in found.shadowed:
        typer.echo(f"kcode: note: {hidden.skill_md} is shadowed by {winner.skill_md} (same name; the first found wins)", err=True)
    if not found.skills:
        typer.echo("no skills (put a folder with a SKILL.md in .kcode/skills of a trusted repository, or in ~/.config/kcode/skills)")
        return
    width = max(len(skill.name) for skill in found.skills)
    for skill in found.skills:
        description = " ".join(skill.description.split())
        if len(description) > 100:
            description = description[:99] + "…"
        typer.echo(f"{skill.name:<{width}}  {skill.source:<7}  {skill_location(skill, root)}")
        typer.echo(f"{'':<{width}}  {description}")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The skill's name.")],
    file: Annotated[str | None, typer.Option("--file", help="A file inside the skill's folder instead of its SKILL.md.")] = None,
    repo: RepoOption = None,
) -> None:
    """Print a skill's SKILL.md (or one of its files) and list the files of its folder."""
    from kcode.errors import SkillError
    from kcode.skills import read_skill_file, skill_files

    _, found = _discover(repo)
    skill = found.get(name)
    if skill is None:
        _fail(f"no skill named {name!r}; the skills are: {', '.join(found.names) or 'none'}", 2)
    try:
        text = read_skill_file(skill, file) if file else skill.text()
    except SkillError as error:
        _fail(str(error), 2)
    typer.echo(f"# {skill.name} ({skill.source}: {skill.path})", err=True)
    typer.echo(text.rstrip("\n"))
    others = [path for path in skill_files(skill) if path != "SKILL.md"]
    if others and not file:
        typer.echo(f"# files: {', '.join(others)}", err=True)


@app.command("save")
def save(
    session: Annotated[str | None, typer.Argument(help="Session id, or a unique prefix (default: the latest of this repository).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The skill's name (default: the model chooses one).")] = None,
    scope: Annotated[str, typer.Option("--scope", help="project: the repository's .kcode/skills; user: ~/.config/kcode/skills.")] = "project",
    model: Annotated[str | None, typer.Option("--model", "-m", help="The model that writes it (default: the session's).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a skill of that name.")] = False,
    repo: RepoOption = None,
) -> None:
    """Distill a finished session into a skill (procedure, literal commands, checks, files); the model writes it, kcode checks it."""
    from kcode.agent.skill_save import save_session_skill
    from kcode.errors import KcodeError, UsageError

    try:
        root = _root(repo) if session is None else None
        saved = save_session_skill(session, repo=root, name=name, scope=scope, model_spec=model, force=force)
    except UsageError as error:
        _fail(str(error), 2)
    except KcodeError as error:
        _fail(str(error), 1)
    tries = "" if saved.attempts == 1 else f" (after {saved.attempts} answers)"
    typer.echo(f"kcode skills save: wrote skill {saved.name} to {saved.path}{tries}")
    if not saved.loaded:
        typer.echo("  this repository is not trusted, so runs here do not load its skills yet: `kcode trust` (or --scope user)")
