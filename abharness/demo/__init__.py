"""The end-to-end demo use case (``abharness demo``)."""

from abharness.demo.run import DemoOptions, run_demo, write_quick_data

__all__ = ["DemoOptions", "run_demo", "write_quick_data"]
