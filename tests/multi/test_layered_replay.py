"""``replay`` of an experiment of a layered file: main-layer experiments re-rank through their arms' backends; other
layers and the holdout change no backend and are refused with the fix; admin-created experiments are found."""

from __future__ import annotations

import pytest

from abharness.analysis.layered import arms_view, layered_experiments
from abharness.core.events import AuditEntry
from abharness.errors import ConfigError
from abharness.replay import replay
from abharness.replay.layered import replay_arms
from abharness.simulate.layered import SimSpec, sim_config, sim_config_dict, simulate_traffic, toy_lists, write_traffic
from abharness.stores import open_store
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend


def _two_main_experiments():
    d = sim_config_dict()
    d["buckets"] = [0, 5000]
    d["layers"] = [*d["layers"], {"name": "main", "salt": "sim-ranker/layer", "experiments": [{
        "experiment_id": "ranker-2", "buckets": [5000, 10000],
        "arms": [{"name": "old", "role": "control", "params": {"backend": "baseline"}},
                 {"name": "new", "role": "treatment", "params": {"backend": "candidate"}}],
        "weights": {"old": 0.5, "new": 0.5}}]}]
    return make_config(**d)


def test_replay_arms_follow_the_main_layer_and_refuse_other_layers() -> None:
    cfg = _two_main_experiments()
    assert replay_arms(cfg, "ranker") == replay_arms(make_config(**sim_config_dict()), "ranker")
    assert replay_arms(cfg, "ranker").backend_of == {"baseline": "baseline", "candidate": "candidate"}
    two = replay_arms(cfg, "ranker-2")
    assert (two.control, two.treatment, two.backend_of) == ("old", "new", {"old": "baseline", "new": "candidate"})
    with pytest.raises(ConfigError, match=r"'k5' of layer 'depth' changes \['k'\], not the backend"):
        replay_arms(cfg, "k5")
    with pytest.raises(ConfigError, match="holdout"):
        replay_arms(cfg, "holdout")
    single = make_config()
    assert replay_arms(single, "anything").control == "baseline"  # a single-experiment file: as before


def test_admin_created_experiments_are_analysed_with_their_arms() -> None:
    cfg = sim_config()
    spec = {"buckets": [9500, 10000], "arms": [{"name": "k10", "role": "control", "params": {"k": 10}},
                                               {"name": "k3", "role": "treatment", "params": {"k": 3}}],
            "weights": {"k10": 0.7, "k3": 0.3}}
    entries = [AuditEntry(1.0, "ranker", "admin", "experiment_create",
                          {"experiment_id": "k3", "layer": "depth", "spec": spec}),
               AuditEntry(2.0, "ranker", "admin", "experiment_create", {"experiment_id": "bad"})]  # unreadable
    view = arms_view(cfg, "k3", lambda: entries)
    assert (view.layer, view.control, dict(view.weights)) == ("depth", "k10", {"k10": 0.7, "k3": 0.3})
    assert ("depth", "k3") in layered_experiments(cfg, lambda: entries)
    with pytest.raises(ConfigError, match="nor created through the admin API"):
        arms_view(cfg, "k3")


def test_replay_of_the_main_experiment_reads_only_its_rows(tmp_path) -> None:
    lists = toy_lists()
    cfg = sim_config()
    traffic = simulate_traffic(lists, SimSpec(units=300, seed=5), cfg)
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        write_traffic(traffic, lists, store)
        corpus = {d: f"doc {d}" for docs in lists.docs for d in docs}
        backends = {"baseline": DictBackend(corpus, name="baseline"), "candidate": DictBackend(corpus, name="cand")}
        chosen = replay_arms(cfg, "ranker")
        rep = replay(store, "ranker", {a: backends[b] for a, b in chosen.backend_of.items()}, control=chosen.control,
                     treatment=chosen.treatment, allow_new_versions=True)
    finally:
        store.close()
    assert rep.impressions == int((~traffic.holdout).sum()) * traffic.queries.shape[1]
    assert rep.units == int((~traffic.holdout).sum()) and set(rep.new_versions) == {"baseline", "candidate"}
