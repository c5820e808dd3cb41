"""The repository's own ``.kcode/config.toml``: ``load_config`` records which settings it
chose, ``kcode.trust.check_project_settings`` refuses the loosening ones until the user
trusts the repository. (tests/e2e/test_trust.py drives the same through the executable.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from kcode.config import Config, load_config
from kcode.errors import ConfigError
from kcode.sandbox import load_policy
from kcode.trust import check_project_settings, trust


def project(root: Path, text: str) -> Path:
    (root / ".kcode").mkdir(parents=True, exist_ok=True)
    (root / ".kcode" / "config.toml").write_text(text)
    return root


def test_load_config_records_the_repository_choices(tmp_path: Path) -> None:
    project(tmp_path, 'sandbox = "read-only"\nmax-steps = 7\nbase_url = "http://127.0.0.1:9/v1"\n')
    config = load_config(tmp_path, {"base_url": "http://127.0.0.1:8/v1"}, environ={"KCODE_MAX_STEPS": "9"})
    assert config.project_settings == {"sandbox"}  # the user set the other two
    assert load_config(tmp_path, {"base_url": None}, environ={}).project_settings == {"sandbox", "max_steps", "base_url"}  # a flag not given
    config = load_config(tmp_path, {}, environ={})
    assert config.project_settings == {"sandbox", "max_steps", "base_url"}
    assert load_config(tmp_path, {"sandbox": "off", "max_steps": 3, "base_url": "x"}, environ={}).project_settings == set()
    assert load_config(None, environ={}).project_settings == set() and Config().project_settings == set()
    assert config.replace(max_steps=1).project_settings == config.project_settings
    assert config == config.replace(project_settings=frozenset())  # not a setting: not compared


def test_project_settings_is_not_a_setting(tmp_path: Path) -> None:
    project(tmp_path, 'project_settings = ["sandbox"]\n')
    with pytest.raises(ConfigError, match="unknown setting 'project_settings'"):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('sandbox = "off"\n', "chooses sandbox profile 'off', which runs commands unsandboxed"),
        ('sandbox = "workspace-write-network"\n', "chooses sandbox profile 'workspace-write-network', which opens the network"),
        ('base_url = "http://127.0.0.1:9/v1"\n', "sets base_url (only your own settings may)"),
        ('prefix_cache = "/tmp/anywhere"\n', "sets prefix_cache (only your own settings may)"),
        ('model = "http://127.0.0.1:9/v1/model"\n', "names a model URL (only your own settings may)"),
    ],
)
def test_a_loosening_setting_is_refused_until_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    config = load_config(project(tmp_path, text), environ={})
    with pytest.raises(ConfigError) as refused:
        check_project_settings(config, tmp_path, load_policy)
    assert str(refused.value) == f"{tmp_path / '.kcode' / 'config.toml'} comes with the repository and {message}; " \
        "trust this repository with `kcode trust` (or KCODE_TRUST_PROJECT=1) if you wrote these settings"  # fmt: skip
    monkeypatch.setenv("KCODE_TRUST_PROJECT", "1")
    check_project_settings(config, tmp_path, load_policy)
    monkeypatch.delenv("KCODE_TRUST_PROJECT")
    assert trust(tmp_path) is True
    check_project_settings(config, tmp_path, load_policy)


def test_settings_that_tighten_or_are_the_users_pass(tmp_path: Path) -> None:
    project(tmp_path, 'sandbox = "read-only"\nmax_steps = 5\n')
    check_project_settings(load_config(tmp_path, environ={}), tmp_path, load_policy)
    project(tmp_path, 'sandbox = "off"\n')
    check_project_settings(load_config(tmp_path, {"sandbox": "off"}, environ={}), tmp_path, load_policy)
    check_project_settings(load_config(tmp_path, environ={"KCODE_SANDBOX": "off"}), tmp_path, load_policy)


def test_the_profile_is_loaded_only_when_the_repository_chose_it(tmp_path: Path) -> None:
    loaded: list[str] = []

    def loader(name: str, root: Path | None = None, *, trusted: bool | None = None):
        loaded.append(f"{name} {root == tmp_path} {trusted}")
        return load_policy(name, root, trusted=trusted)

    check_project_settings(load_config(project(tmp_path, "max_steps = 5\n"), environ={}), tmp_path, loader)
    assert loaded == []
    check_project_settings(load_config(project(tmp_path, 'sandbox = "read-only"\n'), environ={}), tmp_path, loader)
    assert loaded == ["read-only True False"]  # as the untrusted repository sees it
