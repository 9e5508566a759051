"""The package's exception tree. One root, so callers can catch everything abharness raises.

    AbharnessError
    ├── ConfigError            a setting, option or experiment file is wrong (names the field and the fix)
    ├── DataError              a data set is missing or malformed (names the file and line)
    ├── ModelError             a model cannot be loaded, or is not the one an artefact was built with
    │   └── FingerprintMismatch    an index/replay was asked to use a model other than the one recorded
    ├── IndexError_            a FAISS index directory is missing or malformed
    ├── BackendError           a retrieval backend failed (remote error, timeout)
    ├── StoreError             the event store cannot be reached or written
    ├── TokenError             an impression token is forged, expired or does not match
    └── AnalysisError          an analysis cannot run at all (unknown experiment, empty window)

Data *conditions* that still allow an answer (zero variance, too few units, sample-ratio mismatch) are
not exceptions: they come back as diagnostics on the result objects.

Every message says what value was wrong, what was expected, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AbharnessError",
    "ConfigError",
    "DataError",
    "ModelError",
    "FingerprintMismatch",
    "IndexError_",
    "BackendError",
    "StoreError",
    "TokenError",
    "AnalysisError",
]


class AbharnessError(Exception):
    """Root of every error abharness raises on purpose."""


class ConfigError(AbharnessError):
    """A setting, CLI option or experiment file is invalid."""


class DataError(AbharnessError):
    """A data set is missing or malformed; the message names the file (and line where known)."""


class ModelError(AbharnessError):
    """A model cannot be loaded."""


class FingerprintMismatch(ModelError):
    """An artefact (index, logged arm) was built with a different model than the one supplied."""


class IndexError_(AbharnessError):  # noqa: N801 - avoid shadowing the builtin IndexError
    """A FAISS index directory is missing, incomplete or malformed."""


class BackendError(AbharnessError):
    """A retrieval backend failed to answer (error status, timeout, bad payload)."""


class StoreError(AbharnessError):
    """The event store cannot be opened, migrated, read or written."""


class TokenError(AbharnessError):
    """An impression token is forged, expired, or does not match the click."""


class AnalysisError(AbharnessError):
    """An analysis cannot produce any answer (unknown experiment, empty window)."""
