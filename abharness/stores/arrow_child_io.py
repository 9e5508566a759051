"""What the two Arrow reader children (``sqlite_arrow_child.py``, ``pg_arrow_child.py``) share: stream a query's
rows to stdout as Arrow IPC, and report a failure to the parent through stderr and exit status 1.

The children run by path, so this module sits beside them (their own directory is first on ``sys.path``) and, like
them, imports nothing of ``abharness``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn


def stream_query(pa: Any, stmt: Any) -> None:
    """Run the prepared ADBC statement ``stmt`` and write its rows to stdout as one Arrow IPC stream."""
    handle, _ = stmt.execute_query()
    reader = pa.RecordBatchReader._import_from_c(handle.address)
    out = sys.stdout.buffer
    with pa.ipc.new_stream(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
    out.flush()
    reader.close()


def run_child(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status; any error goes to stderr (the parent raises it as a StoreError), exit 1."""
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader stopped early (an error on its side): nothing to report here
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - reported to the parent through stderr
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
