"""The experiment file's layers:/holdout: sections, and that the single-experiment format is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from abharness.core.assignment import assign
from abharness.errors import ConfigError
from abharness.testing.configs import config_dict, make_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _k_layer(**over) -> dict:
    layer = {
        "name": "depth", "salt": "depth-2026", "owns": ["k"],
        "experiments": [{
            "experiment_id": "k20", "buckets": [0, 5000],
            "arms": [{"name": "k10", "role": "control", "params": {"k": 10}},
                     {"name": "k20", "role": "treatment", "params": {"k": 20}}],
            "weights": {"k10": 0.5, "k20": 0.5},
        }],
    }
    layer.update(over)
    return layer


def test_single_experiment_file_is_one_layer_with_one_experiment_assigning_as_before() -> None:
    cfg = make_config()
    d = cfg.design()
    assert [la.name for la in d.layers] == ["main"] and d.holdout is None
    assert [e.experiment_id for e in d.layers[0].experiments] == ["exp1"]
    for i in range(2000):
        a = d.assign(f"u{i}")
        arm = assign(cfg.salt, f"u{i}", cfg.ordered_weights())
        assert a.arm_in("exp1") == arm
        assert dict(a.params) == {"backend": arm, "k": cfg.k}


def test_layers_holdout_and_targeting_from_the_file() -> None:
    rerank = {"name": "rerank", "salt": "rr-1", "owns": ["rerank"], "defaults": {"rerank": False}, "experiments": [
        {"experiment_id": "rr", "arms": [{"name": "off", "role": "control"},
                                         {"name": "on", "role": "treatment", "params": {"rerank": True}}],
         "weights": {"off": 0.5, "on": 0.5}, "targeting": {"locale": ["de-DE", "de-AT"], "device": "mobile"}}]}
    main_more = {"name": "main", "salt": "salt1/layer", "experiments": [
        {"experiment_id": "ft-only", "buckets": [5000, 10000],
         "arms": [{"name": "c", "role": "control", "params": {"backend": "baseline"}},
                  {"name": "t", "role": "treatment", "params": {"backend": "finetuned"}}],
         "weights": {"c": 0.5, "t": 0.5}}]}
    cfg = make_config(buckets=[0, 5000], layers=[_k_layer(), rerank, main_more],
                      holdout={"salt": "hold-2026", "share": 0.05})
    d = cfg.design()
    assert [la.name for la in d.layers] == ["main", "depth", "rerank"]
    assert d.defaults == {"backend": "baseline", "k": 5, "rerank": False}
    seen_rerank = seen_main = 0
    for i in range(4000):
        a = d.assign(f"u{i}", {"locale": "de-AT", "device": "mobile"})
        if a.holdout:
            continue
        ids = {e.experiment_id for e in a.enrollments}
        assert len(ids & {"exp1", "ft-only"}) == 1  # the main layer's two experiments are mutually exclusive
        seen_rerank += "rr" in ids
        seen_main += "exp1" in ids
        assert d.assign(f"u{i}", {"locale": "en-US", "device": "mobile"}).arm_in("rr") is None
    assert seen_rerank > 3000 and 1500 < seen_main < 2300


@pytest.mark.parametrize(("over", "message"), [
    ({"layers": [_k_layer(owns=["backend", "k"])]}, "layers 'main' and 'depth' both choose the backend"),
    ({"layers": [_k_layer(), _k_layer(name="depth2", salt="x")]}, "both set 'k'"),
    ({"layers": [_k_layer(owns=["rerank"], defaults={"rerank": False})]}, "does not own"),
    ({"layers": [_k_layer(owns=["k", "rerank"])]}, "owns \\['rerank'\\] without a default"),
    ({"layers": [_k_layer(experiments=[{**_k_layer()["experiments"][0], "arms": [
        {"name": "k10", "role": "control", "params": {"k": 10}},
        {"name": "k20", "role": "treatment", "params": {"k": 5000}}]}])]}, "params.k 5000"),
    ({"buckets": [0, 6000], "layers": [{"name": "main", "salt": "salt1/layer", "experiments": [
        {"experiment_id": "x", "buckets": [5000, 10000], "arms": [
            {"name": "c", "role": "control", "params": {"backend": "baseline"}},
            {"name": "t", "role": "treatment", "params": {"backend": "finetuned"}}], "weights": {"c": 1, "t": 0}}]}]},
     "share buckets"),
    ({"layers": [{"name": "main", "salt": "salt1/layer", "experiments": [
        {"experiment_id": "x", "buckets": [5000, 10000], "arms": [
            {"name": "c", "role": "control", "params": {"backend": "nope"}},
            {"name": "t", "role": "treatment", "params": {"backend": "finetuned"}}], "weights": {"c": 1, "t": 0}}]}]},
     "'nope' is not a top-level arm"),
    ({"holdout": {"salt": "h", "share": 1.5}}, "holdout.share"),
])
def test_start_up_errors_name_the_layer_and_the_fix(over, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make_config(**over)
    assert "\n" not in str(info.value)


def test_existing_example_still_loads_unchanged() -> None:
    from abharness.config import parse_config

    import yaml

    data = yaml.safe_load((EXAMPLES / "experiment.yaml").read_text())
    cfg = parse_config({**data, "insecure_dev": True})
    assert [la.name for la in cfg.design().layers] == ["main"]
    assert config_dict()["weights"] == {"baseline": 0.5, "finetuned": 0.5}


def test_serve_refuses_a_layer_owning_a_parameter_the_proxy_does_not_act_on(tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from abharness.cli.main import build_app

    path = tmp_path / "exp.yaml"
    rerank = {"name": "rerank", "salt": "rr", "owns": ["rerank"], "defaults": {"rerank": False}}
    path.write_text(yaml.safe_dump(config_dict(holdout={"salt": "h", "share": 0.05}, layers=[_k_layer(), rerank])))
    r = CliRunner().invoke(build_app(), ["serve", "--config", str(path)])
    assert r.exit_code == 2, r.output
    assert "layer 'rerank' owns ['rerank'], which the proxy does not act on" in " ".join(r.output.split())
    assert "Traceback" not in r.output and r.output.count("\n") == 1


def test_a_unit_keeps_its_arm_across_reloads_and_replicas(tmp_path) -> None:
    """Two replicas load the same file; then the file is reloaded with a ramp-up of k20 and a new experiment in
    the depth layer's free buckets: every unit enrolled in a running experiment keeps its arm."""
    import yaml

    from abharness.config import load_config

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config_dict(layers=[_k_layer()], insecure_dev=True)))
    replica_1, replica_2 = load_config(path).design(), load_config(path).design()
    layer = _k_layer()
    exp = layer["experiments"][0]
    ramped = {**exp, "weights": {"k10": 0.4, "k20": 0.6}}
    new = {**exp, "experiment_id": "k30", "buckets": [5000, 8000], "arms": [
        {"name": "k10", "role": "control", "params": {"k": 10}}, {"name": "k30", "role": "treatment",
                                                                  "params": {"k": 30}}],
           "weights": {"k10": 0.5, "k30": 0.5}}
    path.write_text(yaml.safe_dump(config_dict(layers=[{**layer, "experiments": [ramped, new]}], insecure_dev=True)))
    reloaded = load_config(path).design()
    moved = 0
    for i in range(3000):
        u = f"u{i}"
        a1, a2, a3 = replica_1.assign(u), replica_2.assign(u), reloaded.assign(u)
        assert a1 == a2
        assert a3.arm_in("exp1") == a1.arm_in("exp1")
        if a1.arm_in("k20") == "k20":
            assert a3.arm_in("k20") == "k20"  # a ramp-up only moves units from control
        moved += a1.arm_in("k20") == "k10" and a3.arm_in("k20") == "k20"
        if a1.arm_in("k20") is None:
            assert a3.arm_in("k20") is None  # the new experiment took only free buckets
    assert moved > 0


def test_a_launched_experiment_from_the_file_ships_to_all_but_the_holdout() -> None:
    exp = {**_k_layer()["experiments"][0], "status": "launched", "launched_arm": "k20"}
    cfg = make_config(layers=[_k_layer(experiments=[exp])], holdout={"salt": "h", "share": 0.2})
    d = cfg.design()
    assert d.launched["k"] == 20 and d.defaults["k"] == cfg.k
    ks = {d.assign(f"u{i}").holdout: d.assign(f"u{i}").params["k"] for i in range(200)}
    assert ks == {True: cfg.k, False: 20}
    with pytest.raises(ConfigError, match="launched_arm"):
        make_config(layers=[_k_layer(experiments=[{**exp, "launched_arm": None}])])


def test_the_layered_example_validates_and_is_served() -> None:
    from abharness.config import load_config
    from abharness.config_layers import refuse_unserved

    cfg = load_config(EXAMPLES / "layers.yaml", insecure_dev=True)
    d = cfg.design()
    assert [la.name for la in d.layers] == ["main", "depth"]
    assert sum(len(la.experiments) for la in d.layers) == 4 and d.holdout is not None
    refuse_unserved(cfg)  # nothing the proxy cannot serve
    with pytest.raises(ConfigError, match="does not act on"):
        refuse_unserved(cfg.model_copy(update={"layers": [*cfg.layers, cfg.layers[-1].model_copy(
            update={"name": "rerank", "owns": ["rerank"]})]}))
