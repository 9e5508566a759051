"""abharness: did fine-tuning help? Offline evaluation, online A/B + interleaving, honest statistics, replay."""

__version__ = "0.1.0"
