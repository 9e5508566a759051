"""Simulated users: click models over graded qrels, Zipf query popularity, returning users, dwell times.

``plan_traffic`` makes a seeded plan; ``run_simulation`` drives a proxy with it (HTTP or in-process ASGI);
``abharness.simulate.sensitivity`` compares interleaving and A/B sensitivity by vectorised simulation.
"""

from abharness.simulate.driver import SimulationResult, run_simulation, simulate_users
from abharness.simulate.population import PlannedSearch, QueryPool, UserPlan, plan_traffic

__all__ = ["QueryPool", "PlannedSearch", "UserPlan", "plan_traffic", "SimulationResult", "simulate_users", "run_simulation"]
