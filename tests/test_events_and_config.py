from __future__ import annotations

import dataclasses

import pytest

from kcode.config import (
    Config,
    LlamaCppOptions,
    changed_settings,
    config_with,
    load_config,
    parse_duration,
)
from kcode.errors import ConfigError
from kcode.events import EVENT_TYPES, EventBus, SessionStarted, TurnStarted, event_from_dict


def _sample(cls):
    values = {}
    for f in dataclasses.fields(cls):
        if f.name == "ts" or f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        values[f.name] = {"str": "x", "int": 1, "float": 1.5, "bool": True}.get(str(f.type), [] if "list" in str(f.type) else {} if "dict" in str(f.type) else "x")
    return cls(**values)


def test_every_event_round_trips_through_json_dicts():
    assert len(EVENT_TYPES) >= 18
    for name, cls in EVENT_TYPES.items():
        event = _sample(cls)
        event.ts = 123.0
        data = event.to_dict()
        assert data["type"] == name
        assert event_from_dict(data) == event


def test_bus_stamps_and_fans_out_in_order():
    seen = []
    bus = EventBus(clock=lambda: 42.0)
    bus.subscribe(lambda e: seen.append(("a", e.ts)))
    bus.subscribe(lambda e: seen.append(("b", e.ts)))
    bus.emit(SessionStarted(session_id="s", task="t", repo="r", workdir="w", branch="b", base_commit="c", model="m"))
    assert seen == [("a", 42.0), ("b", 42.0)]


def test_bus_names_the_agent_and_keeps_a_forwarded_events_own():
    main = EventBus(clock=lambda: 1.0, agent_id="s-main")
    sub = EventBus(clock=lambda: 2.0, agent_id="s-sub", parent_id="s-main")
    seen = []
    main.subscribe(seen.append)
    sub.subscribe(main.emit)  # a sub-agent's events reach the parent's consumers
    main.emit(TurnStarted(step=1))
    sub.emit(TurnStarted(step=1))
    assert [(e.agent_id, e.parent_id, e.ts) for e in seen] == [("s-main", None, 1.0), ("s-sub", "s-main", 2.0)]
    top, child = (e.to_dict() for e in seen)
    assert top == {"type": "turn.started", "ts": 1.0, "agent_id": "s-main", "step": 1}  # no parent to name
    assert child["parent_id"] == "s-main" and event_from_dict(child) == seen[1]
    assert event_from_dict(top).parent_id is None


def test_unknown_event_type_is_an_error():
    with pytest.raises(ValueError):
        event_from_dict({"type": "nope"})


def test_config_layers_later_wins(tmp_path, kcode_home, monkeypatch):
    (kcode_home / "config").mkdir()
    (kcode_home / "config" / "config.toml").write_text('model = "user-model"\nmax_steps = 10\ntest_command = "make test"\n')
    (tmp_path / ".kcode").mkdir()
    (tmp_path / ".kcode" / "config.toml").write_text('max_steps = 20\nmax_time = "30m"\n')
    monkeypatch.setenv("KCODE_MAX_STEPS", "30")
    config = load_config(tmp_path, {"model": None})
    assert (config.model, config.max_steps, config.max_time, config.test_command) == ("user-model", 30, 1800.0, "make test")
    assert load_config(tmp_path, {"max_steps": 40, "model": "cli"}).max_steps == 40
    assert Config().max_steps == 1000


def test_llama_cpp_settings_keep_their_names_and_land_in_one_dataclass(tmp_path, kcode_home, monkeypatch):
    (tmp_path / ".kcode").mkdir()
    (tmp_path / ".kcode" / "config.toml").write_text('gpu_layers = 12\nkv_type = "q8_0"\noverride_tensor = ["exps=CPU"]\n')
    monkeypatch.delenv("KCODE_KEEP_ALIVE")  # the suite's own (models in process): the defaults here
    monkeypatch.setenv("KCODE_N_BATCH", "256")
    config = load_config(tmp_path, {"threads": 3, "max_steps": 7})
    assert config.llamacpp == LlamaCppOptions(gpu_layers=12, kv_type="q8_0", override_tensor=["exps=CPU"], n_batch=256, threads=3)
    assert config.max_steps == 7 and not hasattr(config, "gpu_layers")
    # a session stores its changed settings by name; loading them back gives the same config (resume)
    changed = changed_settings(config)
    assert changed == {"max_steps": 7, "gpu_layers": 12, "kv_type": "q8_0", "override_tensor": ["exps=CPU"],
                       "n_batch": 256, "threads": 3}
    monkeypatch.delenv("KCODE_N_BATCH")
    assert load_config(None, changed) == config == config_with(**changed)
    assert changed_settings(Config()) == {}
    with pytest.raises(ConfigError, match="unknown setting 'llamacpp'"):
        config_with(llamacpp={"ctx": 1})  # the section is not a setting; its settings are


def test_config_errors_are_clear(tmp_path):
    (tmp_path / ".kcode").mkdir()
    (tmp_path / ".kcode" / "config.toml").write_text("max_stepz = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_stepz'"):
        load_config(tmp_path)
    (tmp_path / ".kcode" / "config.toml").write_text("max_steps = 'many'\n")
    with pytest.raises(ConfigError, match="invalid value"):
        load_config(tmp_path)
    (tmp_path / ".kcode" / "config.toml").write_text("max_steps = [\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_parse_duration():
    assert parse_duration("90") == 90 and parse_duration("2h") == 7200 and parse_duration("1.5m") == 90
    with pytest.raises(ConfigError):
        parse_duration("soon")
