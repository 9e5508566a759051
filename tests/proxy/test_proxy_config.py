"""Experiment config validation: refusals name the field; secrets are never echoed; the example file loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from abharness.config import load_config, parse_config
from abharness.errors import ConfigError
from abharness.testing.configs import config_dict


def test_valid_config_and_defaults():
    cfg = parse_config(config_dict())
    assert cfg.control == "baseline" and cfg.treatments == ["finetuned"]
    assert cfg.events.flush_interval_s == 0.2 and cfg.limits.max_k == 100


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"weights": {"baseline": 0.5, "finetuned": 0.6}}, "weights: weights sum to 1.1"),
        ({"weights": {"baseline": 1.0}}, "weights: keys"),
        ({"mode": "bandit"}, "mode:"),
        ({"k": 0}, "k:"),
        ({"k": 500}, "k: 500 exceeds limits.max_k=100"),
        ({"salt": ""}, "salt:"),
        ({"unit": "device"}, "unit:"),
        ({"experiment_id": "has space"}, "experiment_id:"),
        ({"store": "x"}, "store: Extra inputs are not permitted"),
        ({"overrides": {"qa": "nope"}}, "overrides: arms ['nope']"),
        ({"session_cookie": {"name": "sid"}}, "session_cookie: a proxy-issued cookie identifies a session"),
        ({"admin_token": ""}, "admin_token: empty, default"),
        ({"admin_token": "changeme"}, "admin_token: empty, default"),
        ({"token_secret": None}, "token_secret: missing"),
        ({"events": {"on_full": "block"}}, "events.on_full:"),
        ({"limits": {"max_body_bytes": 10}}, "limits.max_body_bytes:"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(change, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(config_dict(**change), source="experiment.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith("experiment.yaml: invalid experiment config")


@pytest.mark.parametrize(
    "arms, needle",
    [
        ([{"name": "a", "role": "control", "backend": {"kind": "local", "index": "x", "model": "minilm"}}],
         "arms: List should have at least 2 items"),
        ([{"name": "a", "role": "control", "backend": {"kind": "local", "index": "x", "model": "m"}},
          {"name": "a", "role": "treatment", "backend": {"kind": "local", "index": "y", "model": "m"}}],
         "duplicate arm names ['a']"),
        ([{"name": "a", "role": "treatment", "backend": {"kind": "local", "index": "x", "model": "m"}},
          {"name": "b", "role": "treatment", "backend": {"kind": "local", "index": "y", "model": "m"}}],
         "exactly one arm with role 'control'"),
        ([{"name": "a", "role": "control", "backend": {"kind": "ftp", "url": "x"}},
          {"name": "b", "role": "treatment", "backend": {"kind": "local", "index": "y", "model": "m"}}],
         "arms.0.backend:"),
        ([{"name": "a", "role": "control", "backend": {"kind": "remote", "url": "localhost:80"}},
          {"name": "b", "role": "treatment", "backend": {"kind": "local", "index": "y", "model": "m"}}],
         "arms.0.backend.remote.url:"),
        ([{"name": "a", "role": "control", "backend": {"kind": "local", "model": "m"}},
          {"name": "b", "role": "treatment", "backend": {"kind": "local", "index": "y", "model": "m"}}],
         "arms.0.backend.local.index: Field required"),
    ],
)
def test_bad_arms_are_refused_naming_the_field(arms, needle):
    weights = {a["name"]: 1.0 / len(arms) for a in arms}
    with pytest.raises(ConfigError) as err:
        parse_config(config_dict(arms=arms, weights=weights))
    assert needle in str(err.value)


def test_interleave_needs_two_arms():
    arms = config_dict()["arms"] + [
        {"name": "third", "role": "treatment", "backend": {"kind": "local", "index": "z", "model": "m"}}
    ]
    with pytest.raises(ConfigError, match="mode: 'interleave' needs exactly two arms"):
        parse_config(config_dict(arms=arms, weights={"baseline": 0.5, "finetuned": 0.25, "third": 0.25},
                                 mode="interleave"))


def test_secrets_are_never_echoed():
    with pytest.raises(ConfigError) as err:
        parse_config(config_dict(admin_token="short-secret-x"))
    assert "short-secret-x" not in str(err.value)


def test_insecure_dev_accepts_default_secrets():
    cfg = parse_config(config_dict(admin_token="", token_secret=None, insecure_dev=True))
    assert cfg.insecure_dev


def test_load_config_resolves_relative_paths_and_env_secrets(tmp_path, monkeypatch):
    data = config_dict(admin_token="", token_secret=None)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="admin_token"):
        load_config(path)
    monkeypatch.setenv("ABHARNESS_ADMIN_TOKEN", "xq7-admin-token-for-env-tests-0")
    monkeypatch.setenv("ABHARNESS_TOKEN_SECRET", "yq7-token-secret-for-env-tests-1")
    cfg = load_config(path)
    assert cfg.arms[0].backend.index == tmp_path / "idx/a"
    assert cfg.admin_token.get_secret_value() == "xq7-admin-token-for-env-tests-0"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


def test_example_config_is_valid(repo_root: Path, monkeypatch):
    monkeypatch.setenv("ABHARNESS_ADMIN_TOKEN", "xq7-admin-token-for-env-tests-0")
    monkeypatch.setenv("ABHARNESS_TOKEN_SECRET", "yq7-token-secret-for-env-tests-1")
    cfg = load_config(repo_root / "examples" / "experiment.yaml")
    assert cfg.experiment_id and len(cfg.arms) == 2
