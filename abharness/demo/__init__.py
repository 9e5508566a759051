"""The end-to-end demo (``abharness demo``): ``run`` orchestrates, ``stages`` holds one function per stage,
``live`` the proxy runs, ``fast`` the ONNX encoders, ``quickdata`` the ``--quick`` slice, ``summary`` the typed
verdicts and the report.

It drives the whole system as a user would, through the HTTP front door (``api.create_app``), so it sits with the
front doors in the layer table (tests/test_layers.py)."""

from abharness.demo.run import DemoOptions, run_demo, write_quick_data

__all__ = ["DemoOptions", "run_demo", "write_quick_data"]
