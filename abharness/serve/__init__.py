"""The serve use case: route searches to arms, interleave, log exposures and clicks (no HTTP here; see ``abharness.api``)."""
