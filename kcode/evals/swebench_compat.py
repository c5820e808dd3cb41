"""The parts of the official ``swebench`` package (pinned: 4.1.0) that grading reuses, loaded
without its package ``__init__``s.

``swebench/__init__.py`` and ``swebench/harness/__init__.py`` import docker, modal and
datasets at import time. :func:`official` puts bare package modules for ``swebench``,
``swebench.harness``, ``swebench.harness.test_spec`` and ``swebench.harness.log_parsers`` into
``sys.modules`` (with the real ``__path__``), and a stand-in ``test_spec.test_spec`` (the
parsers only name ``TestSpec`` in annotations), then imports the real ``constants``,
``log_parsers.python`` and ``grading`` modules. Nothing else of the package runs.

What is reused: the install and test specs (``MAP_REPO_VERSION_TO_SPECS``), the Python log
parsers (``MAP_REPO_TO_PARSER_PY``), and the resolution rules (``get_eval_tests_report``,
``get_resolution_status``, ``FAIL_ONLY_REPOS``). The test directives follow
``harness/test_spec/python.py:get_test_directives`` (that module imports requests and
datasets at import time, so its ten lines are restated here, with the official
``NON_TEST_EXTS``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kcode.errors import KcodeError

__all__ = [
    "PINNED_VERSION",
    "RepoSpec",
    "SwebenchUnavailable",
    "UnsupportedInstance",
    "modified_files",
    "official",
    "parse_test_output",
    "repo_spec",
    "tests_report",
    "test_directives",
]

PINNED_VERSION = "4.1.0"
_BARE_PACKAGES = ("swebench", "swebench.harness", "swebench.harness.test_spec", "swebench.harness.log_parsers")
_lock = threading.Lock()
_loaded: types.SimpleNamespace | None = None


class SwebenchUnavailable(KcodeError):
    """The official swebench package is not installed (or not the pinned version)."""


class UnsupportedInstance(KcodeError):
    """An instance that cannot be graded without Docker here; the message says why."""


def official() -> types.SimpleNamespace:
    """The official modules: ``constants``, ``parsers`` (repo -> parser) and ``grading``."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _load() -> types.SimpleNamespace:
    spec = importlib.util.find_spec("swebench")
    if spec is None or not spec.submodule_search_locations:
        raise SwebenchUnavailable(f"grading needs the official swebench package: pip install 'kcode[eval]' (swebench=={PINNED_VERSION})")
    root = list(spec.submodule_search_locations)[0]
    version = _installed_version()
    if version != PINNED_VERSION:
        raise SwebenchUnavailable(f"grading needs swebench=={PINNED_VERSION} (the last release with the install specs); found {version}")
    for name in _BARE_PACKAGES:
        if name in sys.modules and getattr(sys.modules[name], "__file__", None):
            continue  # the real package was imported by someone else: use it as it is
        module = types.ModuleType(name)
        module.__path__ = [root + name[len("swebench") :].replace(".", "/")]
        module.__package__ = name
        # a spec, so importlib.util.find_spec("swebench") keeps working for everyone else
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        module.__spec__.submodule_search_locations = list(module.__path__)
        sys.modules[name] = module
    stand_in = "swebench.harness.test_spec.test_spec"
    if stand_in not in sys.modules:
        module = types.ModuleType(stand_in)
        module.TestSpec = type("TestSpec", (), {"__doc__": "stand-in: kcode grades without the Docker test spec"})
        sys.modules[stand_in] = module
    constants = importlib.import_module("swebench.harness.constants")
    parsers_py = importlib.import_module("swebench.harness.log_parsers.python")
    log_parsers = sys.modules["swebench.harness.log_parsers"]
    if not hasattr(log_parsers, "MAP_REPO_TO_PARSER"):
        log_parsers.MAP_REPO_TO_PARSER = parsers_py.MAP_REPO_TO_PARSER_PY
    grading = importlib.import_module("swebench.harness.grading")
    return types.SimpleNamespace(constants=constants, parsers=parsers_py.MAP_REPO_TO_PARSER_PY, parsers_module=parsers_py, grading=grading)


def _installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("swebench")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class RepoSpec:
    """How to build and test one (repository, version): the official spec or the overrides."""

    repo: str
    version: str
    python: str
    packages: list[str] = field(default_factory=list)  # pip requirements for the env
    requirements_paths: list[str] = field(default_factory=list)  # read from the repository
    pre_install: list[str] = field(default_factory=list)
    install: str = ""
    test_cmd: str = "pytest -rA"
    eval_commands: list[str] = field(default_factory=list)
    parser: Callable[[str, Any], dict[str, str]] | None = None
    official: bool = False
    env: dict[str, str] = field(default_factory=dict)  # variables for the install and the tests

    @property
    def env_key(self) -> str:
        name = self.repo.replace("/", "__")
        return f"{name}-{self.version or 'default'}"


def repo_spec(inst: Any) -> RepoSpec:
    """The spec for an instance: the official one for a known (repo, version), else the
    instance's overrides (python, pre_install, packages, install, test_cmd) over pytest
    defaults. Overrides apply on top of an official spec too. Raises UnsupportedInstance."""
    sw = official()
    overrides = dict(getattr(inst, "overrides", None) or {})
    specs = sw.constants.MAP_REPO_VERSION_TO_SPECS.get(inst.repo)
    if specs is not None:
        base = specs.get(inst.version)
        if base is None:
            raise UnsupportedInstance(f"{inst.repo} has no official spec for version {inst.version!r}")
        spec = _from_official(inst, base, sw)
    else:
        # a repository the specs do not know: pip install -e . and pytest (the test command's
        # runner must be in the env), unless the instance says otherwise
        spec = RepoSpec(repo=inst.repo, version=inst.version, python=overrides.get("python", "3.11"), install="python -m pip install -e .",
                        packages=["pytest"])
        spec.parser = sw.parsers_module.parse_log_pytest
    if "python" in overrides:
        spec.python = str(overrides["python"])
    if "packages" in overrides:
        spec.packages = [str(p) for p in overrides["packages"]]
    for key in ("pre_install",):
        if key in overrides:
            spec.pre_install = [str(c) for c in overrides[key]]
    for key in ("install", "test_cmd"):
        if key in overrides:
            setattr(spec, key, str(overrides[key]))
    return spec


def _from_official(inst: Any, base: dict, sw: types.SimpleNamespace) -> RepoSpec:
    packages = base.get("packages", "")
    spec = RepoSpec(repo=inst.repo, version=inst.version, python=str(base["python"]), official=True)
    if packages == "environment.yml":
        raise UnsupportedInstance(f"{inst.repo} {inst.version}: the official environment is a conda environment.yml (pip-only here)")
    if packages == "requirements.txt":
        spec.requirements_paths = list(sw.constants.MAP_REPO_TO_REQS_PATHS.get(inst.repo, []))
    elif packages:
        spec.packages = [p.strip("'\"") for p in packages.split()]
    spec.packages += list(base.get("pip_packages", []))
    if base.get("apt-pkgs") or any("apt-get" in c for c in base.get("pre_install", [])):
        raise UnsupportedInstance(f"{inst.repo} {inst.version}: the official setup installs system packages with apt-get")
    spec.pre_install = list(base.get("pre_install", []))
    spec.install = base.get("install", "")
    test_cmd = base["test_cmd"]
    spec.test_cmd = test_cmd[-1] if isinstance(test_cmd, list) else test_cmd
    spec.eval_commands = list(base.get("eval_commands", []))
    if re.fullmatch(r"\d+\.\d+", inst.version or ""):
        # the checkout has no tags (the official one keeps the older ones): setuptools_scm
        # would call the project 0.1.dev, which breaks minversion checks
        spec.env["SETUPTOOLS_SCM_PRETEND_VERSION"] = f"{inst.version}.0"
    spec.parser = sw.parsers.get(inst.repo)
    if spec.parser is None:
        raise UnsupportedInstance(f"{inst.repo}: no official log parser")
    return spec


_DIFF_HEADER = re.compile(r"^diff --git a/(.*) b/(.*)$", re.MULTILINE)


def test_directives(inst: Any) -> list[str]:
    """The test files to run: the official rule (the files ``test_patch`` touches, less
    non-test extensions; Django's as dotted modules), or the instance's ``test_files``."""
    files = (getattr(inst, "overrides", None) or {}).get("test_files")
    if files:
        return [str(f) for f in files]
    non_test = official().constants.NON_TEST_EXTS
    directives = [b for _, b in _DIFF_HEADER.findall(inst.test_patch or "")]
    directives = [d for d in directives if not any(d.endswith(ext) for ext in non_test)]
    if inst.repo == "django/django":
        out = []
        for d in directives:
            d = d[: -len(".py")] if d.endswith(".py") else d
            d = d[len("tests/") :] if d.startswith("tests/") else d
            out.append(d.replace("/", "."))
        directives = out
    return directives


def modified_files(patch: str) -> list[str]:
    """The existing files a patch changes (the official ``get_modified_files``: not the
    files it creates)."""
    files: list[str] = []
    for block in re.split(r"(?m)^(?=diff --git )", patch or ""):
        header = _DIFF_HEADER.match(block)
        if header is None:
            continue
        if re.search(r"(?m)^(new file mode|--- /dev/null)", block):
            continue
        if header.group(1) not in files:
            files.append(header.group(1))
    return files


def parse_test_output(inst: Any, spec: RepoSpec, text: str) -> dict[str, str]:
    """The official parser's status map (test id -> PASSED/FAILED/SKIPPED/ERROR/XFAIL)."""
    assert spec.parser is not None
    return spec.parser(text, None)


def tests_report(inst: Any, status_map: dict[str, str]) -> tuple[dict, bool]:
    """The official ``tests_status`` block and whether the instance is resolved."""
    sw = official()
    c, g = sw.constants, sw.grading
    eval_type = c.EvalType.FAIL_ONLY if inst.repo in c.FAIL_ONLY_REPOS else c.EvalType.PASS_AND_FAIL
    gold = {c.KEY_INSTANCE_ID: inst.instance_id, c.FAIL_TO_PASS: list(inst.fail_to_pass), c.PASS_TO_PASS: list(inst.pass_to_pass)}
    report = g.get_eval_tests_report(status_map, gold, eval_type=eval_type)
    return report, g.get_resolution_status(report) == c.ResolvedStatus.FULL.value
