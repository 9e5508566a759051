"""ONNX export: round trip on a tiny sentence-transformers model made offline, the agreement gate's refusal, the
export's own fingerprint, the index/backend acceptance rule (source fingerprint), and the ``model export`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abharness.backends.local import LocalBackend, open_local_backend
from abharness.cli.main import main
from abharness.data import RetrievalDataset
from abharness.encoders import fingerprint_dir, load_encoder
from abharness.encoders.onnx import MANIFEST_FILE, SETTINGS_FILE, OnnxEncoder, onnx_fingerprint
from abharness.errors import ConfigError, FingerprintMismatch, ModelError
from abharness.export import ExportRefused, agreement, export_onnx
from abharness.index import build_index, load_index


def _write_beir(ds: RetrievalDataset, root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id, doc in ds.corpus.items():
            fh.write(json.dumps({"_id": doc_id, "title": doc.title, "text": doc.text}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text in ds.queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (root / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, rel in ds.qrels.items():
            fh.writelines(f"{qid}\t{d}\t{s}\n" for d, s in rel.items())
    return root


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory, scifact_slice: RetrievalDataset) -> Path:
    return _write_beir(scifact_slice, tmp_path_factory.mktemp("beir") / "scifact-slice")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, random weights (seeded), mean pooling + normalisation."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from abharness.encoders import builtin_model_path

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(root / "raw")
    AutoTokenizer.from_pretrained(str(builtin_model_path())).save_pretrained(root / "raw")
    st = SentenceTransformer(
        modules=[models.Transformer(str(root / "raw"), max_seq_length=64), models.Pooling(32, "mean"), models.Normalize()],
        device="cpu",
    )
    st.save(str(root / "model"), create_model_card=False)
    return root / "model"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_model: Path, beir_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    export_onnx(str(tiny_model), beir_dir, out, variants=["fp32", "fp32-fused"], progress=False)
    return out


def test_export_round_trip(tiny_export: Path, tiny_model: Path, scifact_slice: RetrievalDataset) -> None:
    manifest = json.loads((tiny_export / MANIFEST_FILE).read_text())
    assert {p.name for p in tiny_export.iterdir()} >= {"model.onnx", "tokenizer.json", SETTINGS_FILE, MANIFEST_FILE}
    assert manifest["fingerprint"] == onnx_fingerprint(tiny_export) != manifest["source_fingerprint"]
    assert manifest["source_fingerprint"] == fingerprint_dir(tiny_model)
    assert json.loads((tiny_export / SETTINGS_FILE).read_text())["pooling"] == "mean"
    assert manifest["variant"] in {"fp32", "fp32-fused"} and [r["variant"] for r in manifest["frontier"]] == [
        "fp32", "fp32-fused"]
    agree = manifest["agreement"]
    assert agree["thresholds"] == {"min_topk_overlap": 0.99, "min_cosine_mean": 0.99, "k": 10}
    assert agree["n_queries"] == len(set(scifact_slice.queries.values())) and agree["topk_overlap"] >= 0.99
    assert agree["p50_ms"] > 0 and agree["torch_p50_ms"] > 0
    onnx = load_encoder(tiny_export)
    torch_model = load_encoder(tiny_model)
    assert isinstance(onnx, OnnxEncoder) and onnx.source_fingerprint == torch_model.fingerprint
    # queries and full documents (long, truncated, padded per batch) come out as torch computes them, in input order
    texts = list(scifact_slice.queries.values())[:7] + [d.full_text for d in list(scifact_slice.corpus.values())[:9]]
    a, b = onnx.encode(texts, batch_size=4), torch_model.encode(texts, batch_size=4)
    assert a.shape == b.shape == (16, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9999
    np.testing.assert_allclose(onnx.encode(texts[3:4]), a[3:4], atol=1e-5)


def test_export_refuses_below_threshold_and_writes_nothing(tiny_model: Path, beir_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "refused"
    with pytest.raises(ExportRefused, match=r"no ONNX variant .* closest: int8-dyn with top-10 overlap .* nothing written"):
        export_onnx(str(tiny_model), beir_dir, out, variants=["int8-dyn"], min_cosine=0.9999999, min_overlap=1.0,
                    progress=False)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]


def test_export_argument_errors(tiny_model: Path, beir_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown ONNX variant.*fp16.*valid: fp32"):
        export_onnx(str(tiny_model), beir_dir, tmp_path / "x", variants=["fp16"], progress=False)
    with pytest.raises(ConfigError, match="precision='bf16'"):
        export_onnx(str(tiny_model), beir_dir, tmp_path / "x", precision="bf16", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError, match="not empty.*--overwrite"):
        export_onnx(str(tiny_model), beir_dir, tmp_path / "full", progress=False)


def test_tampered_export_is_refused(tiny_export: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    settings = json.loads((copy / SETTINGS_FILE).read_text())
    (copy / SETTINGS_FILE).write_text(json.dumps({**settings, "pooling": "cls"}))
    with pytest.raises(ModelError, match="modified after it was written"):
        load_encoder(copy)


def test_agreement_figures() -> None:
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(50, 8)).astype(np.float32)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    same = agreement(q, q, docs, k=10)
    assert same.topk_overlap == 1.0 and same.cosine_min == pytest.approx(1.0)
    flipped = agreement(q, -q, docs, k=10)
    assert flipped.cosine_mean == pytest.approx(-1.0) and flipped.topk_overlap == 0.0


def test_backend_serves_an_export_of_the_index_model_only(
    tiny_export: Path, tiny_model: Path, scifact_slice: RetrievalDataset, tmp_path: Path, bow
) -> None:
    torch_model = load_encoder(tiny_model)
    index_dir = tmp_path / "idx"
    build_index(torch_model, scifact_slice, index_dir, progress=False, cache_dir=tmp_path / "emb")
    onnx = load_encoder(tiny_export)
    queries = list(scifact_slice.queries.values())[:10]
    with LocalBackend(load_index(index_dir, onnx), onnx, cache_size=0) as fast, \
            LocalBackend(load_index(index_dir, torch_model), torch_model, cache_size=0) as slow:
        # exposures record the query encoder actually serving (its own fingerprint) and the same index
        assert fast.info.model_fingerprint == onnx.fingerprint != slow.info.model_fingerprint
        assert fast.info.index_fingerprint == slow.info.index_fingerprint
        got, want = fast.search(queries, 5), slow.search(queries, 5)
        assert [[h.doc_id for h in r] for r in got] == [[h.doc_id for h in r] for r in want]
    with open_local_backend(index_dir, str(tiny_export), cache_size=0) as opened:
        assert opened.encoder.fingerprint == onnx.fingerprint
    other = tmp_path / "bow-idx"
    build_index(bow, scifact_slice, other, progress=False, cache_dir=tmp_path / "emb")
    with pytest.raises(FingerprintMismatch) as info:
        load_index(other, onnx)
    message = str(info.value)
    assert "\n" not in message and bow.fingerprint in message and onnx.source_fingerprint in message
    assert "exported from model fingerprint" in message and "abharness model export --onnx" in message


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_model_export(tiny_model: Path, beir_dir: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = _run(["model", "export", "--help"], capsys)
    assert code == 0 and "--onnx" in out and "--int8" in out and "--min-overlap" in out
    base = ["model", "export", "--model", str(tiny_model), "--data", str(beir_dir), "--no-progress"]
    code, _, err = _run([*base, "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and "pass --onnx" in err
    code, out, _ = _run([*base, "--onnx", "--variant", "fp32", "--out", str(tmp_path / "a"), "--json"], capsys)
    assert code == 0, out
    assert json.loads(out[out.index("{"):])["variant"] == "fp32"
    code, _, err = _run([*base, "--onnx", "--int8", "--variant", "int8-dyn", "--min-cosine", "0.9999999",
                         "--min-overlap", "1.0", "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "nothing written" in " ".join(err.split()) and not (tmp_path / "b").exists()


@pytest.mark.model
def test_minilm_fused_export_agrees_with_torch(beir_dir: Path, tmp_path: Path) -> None:
    result = export_onnx("minilm", beir_dir, tmp_path / "minilm-onnx", variants=["fp32-fused"], progress=False)
    agree = result.manifest.agreement
    assert agree["topk_overlap"] >= 0.99 and agree["cosine_min"] > 0.999
    assert result.manifest.source_fingerprint == load_encoder("minilm").fingerprint


def test_documents_encoded_by_an_export_pin_its_source_model(
    tiny_export: Path, tiny_model: Path, scifact_slice: RetrievalDataset, tmp_path: Path
) -> None:
    onnx, torch_model = load_encoder(tiny_export), load_encoder(tiny_model)
    agree = onnx.manifest.agreement
    assert agree["doc_n"] > 0 and agree["doc_cosine_min"] > 0.9999 and agree["documents_pass"] is True
    manifest = build_index(onnx, scifact_slice, tmp_path / "idx", progress=False, cache_dir=tmp_path / "emb")
    assert manifest.model_fingerprint == torch_model.fingerprint
    assert manifest.params["document_encoder"]["fingerprint"] == onnx.fingerprint
    load_index(tmp_path / "idx", torch_model)  # the source model is accepted for queries, as is the export
    load_index(tmp_path / "idx", onnx)
    onnx.manifest.agreement["documents_pass"] = False
    with pytest.raises(ModelError, match="did not pass the document agreement gate"):
        build_index(onnx, scifact_slice, tmp_path / "idx2", progress=False, cache_dir=tmp_path / "emb")


def test_index_server_serves_an_export(tiny_export: Path, tiny_model: Path, scifact_slice: RetrievalDataset,
                                      tmp_path: Path) -> None:
    import anyio
    import httpx

    from abharness.api.index_server import create_index_server_app

    build_index(load_encoder(tiny_model), scifact_slice, tmp_path / "idx", progress=False, cache_dir=tmp_path / "emb")
    app = create_index_server_app(opener=lambda: open_local_backend(tmp_path / "idx", str(tiny_export), cache_size=0))
    query = next(iter(scifact_slice.queries.values()))

    async def run() -> tuple[dict, dict]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                info = (await client.get("/info")).json()
                hits = (await client.post("/search", json={"queries": [query], "k": 3})).json()
        return info, hits

    info, hits = anyio.run(run)
    assert info["model_fingerprint"] == load_encoder(tiny_export).fingerprint
    assert len(hits["results"][0]) == 3


def test_cli_reference_docs_reaches_the_export(tiny_model: Path, beir_dir: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = _run(["model", "export", "--onnx", "--model", str(tiny_model), "--data", str(beir_dir), "--no-progress",
                         "--variant", "fp32", "--reference-docs", "50", "--out", str(tmp_path / "r"), "--json"], capsys)
    assert code == 0, out
    agreement = json.loads((tmp_path / "r" / MANIFEST_FILE).read_text())["agreement"]
    corpus_size = len((beir_dir / "corpus.jsonl").read_text().splitlines())
    assert 50 <= agreement["reference_docs"] < corpus_size  # a sample (all judged documents kept), not the corpus
