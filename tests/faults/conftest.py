"""The fault suite prints its table (fault, searches answered, accepted, stored, spooled, quarantined, dropped,
lost) at the end of the run, so it can be quoted."""

from __future__ import annotations

import pytest

ROWS: list[str] = []


@pytest.fixture()
def fault_table() -> list[str]:
    return ROWS


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not ROWS:
        return
    from .harness import header

    terminalreporter.write_sep("=", "fault table (events: impressions + clicks the proxy answered as accepted)")
    terminalreporter.write_line(header())
    for line in ROWS:
        terminalreporter.write_line(line)
