"""The config-driven path with real adapters: local arms (MiniLM + FAISS over a SciFact slice) opened by the
lifespan from the config, the real SQLite store and EventWriter, interleaving through ASGITransport."""

from __future__ import annotations

from pathlib import Path

import pytest

from abharness.api.app import create_app
from abharness.config import parse_config
from abharness.stores import open_store
from abharness.testing.client import serving
from abharness.testing.configs import config_dict

pytestmark = [pytest.mark.model, pytest.mark.anyio]


@pytest.fixture(scope="module")
def scifact_index(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from abharness.data import load_beir, slice_dataset
    from abharness.encoders.st import load_encoder
    from abharness.index.faiss_index import build_index

    ds = slice_dataset(load_beir(shared_data / "scifact", split="test"), n_queries=10, n_distractors=150, seed=0)
    out = tmp_path_factory.mktemp("idx") / "scifact-slice"
    build_index(load_encoder("minilm"), ds, out, progress=False, use_cache=False)
    return out, list(ds.queries.values())


async def test_local_arms_from_config_interleave_and_log(scifact_index, tmp_path: Path) -> None:
    index, queries = scifact_index
    local = {"kind": "local", "index": str(index), "model": "minilm"}
    cfg = parse_config(config_dict(
        arms=[{"name": "baseline", "role": "control", "backend": local},
              {"name": "finetuned", "role": "treatment", "backend": {**local, "max_batch": 4}}],
        mode="interleave", k=5, store_url=f"sqlite:///{tmp_path / 'events.db'}",
    ))
    app = create_app(cfg)
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        ids = []
        for i, q in enumerate(queries[:5]):
            r = await client.post("/search", json={"query": q, "unit_id": f"u{i}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["results"]) == 5 and all(x["title"] is not None for x in body["results"])
            # Same model + index on both arms: team draft of identical rankings shows that ranking.
            scores = [x["score"] for x in body["results"]]
            assert scores == sorted(scores, reverse=True)
            ids.append(body["impression_id"])
            first = body["results"][0]
            c = await client.post("/click", json={"impression_token": body["impression_token"],
                                                  "doc_id": first["doc_id"], "position": 1})
            assert c.status_code == 200
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        assert store.counts("exp1") == {"impressions": 5, "clicks": 5, "audit": 1}
        imp = store.get_impression(ids[0])
        assert imp is not None and imp.arm == "interleaved"
        assert imp.fingerprints["baseline"]["model"] == imp.fingerprints["finetuned"]["model"]
        agg = list(store.interleave_aggregates("exp1"))
        assert sum(a.impressions for a in agg) == 5
    finally:
        store.close()
