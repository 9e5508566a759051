"""abharness: did fine-tuning help? Offline evaluation, online A/B + interleaving, honest statistics, replay.

The library API, for a notebook (docs/library.md)::

    import abharness

    store = abharness.open_store("artifacts/demo/events.db")   # never creates or migrates (create=True to do so)
    report = abharness.analyze(store, "demo-ab")               # AnalysisReport: .decision, .to_dict(), .to_frame()
    abharness.replay(store, "demo-ab", config="experiment.yaml").to_frame()
    abharness.evaluate("minilm", "artifacts/models/scifact-ft", data_root="../shared/data", limit=50).to_frame()

Every error is an ``abharness.AbharnessError`` (see ``abharness.errors`` for the tree). Heavy dependencies (torch,
FAISS, pandas) load only when a call needs them: ``import abharness`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from abharness.errors import AbharnessError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "AbharnessError",
    "open_store",
    "load_config",
    "analyze",
    "replay",
    "evaluate",
]

_LIBRARY = frozenset({"open_store", "load_config", "analyze", "replay", "evaluate"})

if TYPE_CHECKING:  # pragma: no cover
    from abharness.library import analyze, evaluate, load_config, open_store, replay


def __getattr__(name: str) -> Any:
    if name in _LIBRARY:
        from abharness import library

        value = getattr(library, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'abharness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LIBRARY)
