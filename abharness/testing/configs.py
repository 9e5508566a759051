"""A valid experiment config for tests and demos (secrets are test-only constants, never for production)."""

from __future__ import annotations

from typing import Any

from abharness.config import ExperimentConfig, parse_config

__all__ = ["TEST_ADMIN_TOKEN", "TEST_TOKEN_SECRET", "config_dict", "make_config"]

TEST_ADMIN_TOKEN = "a-very-long-admin-token-for-tests"
TEST_TOKEN_SECRET = "a-very-long-token-secret-for-tests"


def config_dict(**overrides: Any) -> dict[str, Any]:
    """A two-arm (baseline control, finetuned treatment) config mapping; keys in ``overrides`` replace the defaults.

    The local index paths are placeholders: inject backends (``create_app(..., backends=...)``) to use it.
    """
    data: dict[str, Any] = {
        "experiment_id": "exp1",
        "salt": "salt1",
        "unit": "user",
        "arms": [
            {"name": "baseline", "role": "control", "backend": {"kind": "local", "index": "idx/a", "model": "minilm"}},
            {"name": "finetuned", "role": "treatment",
             "backend": {"kind": "local", "index": "idx/b", "model": "models/ft"}},
        ],
        "weights": {"baseline": 0.5, "finetuned": 0.5},
        "mode": "ab",
        "k": 5,
        "store_url": "sqlite:///:memory:",
        "admin_token": TEST_ADMIN_TOKEN,
        "token_secret": TEST_TOKEN_SECRET,
    }
    data.update(overrides)
    return data


def make_config(**overrides: Any) -> ExperimentConfig:
    """``parse_config(config_dict(**overrides))``."""
    return parse_config(config_dict(**overrides))
