"""Mixed-precision and smoothed int8 ONNX variants: the builders give valid graphs that compute what they should,
and the export's gate refuses one that does not agree with torch (a tiny seeded BERT, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abharness.data import RetrievalDataset
from abharness.export import ExportRefused, export_onnx
from abharness.export.mixed import ROLES, matmul_roles, quantize_matmuls, select_roles, select_units, smooth
from abharness.export.variants import build_variant, export_fp32


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, random weights (seeded), mean pooling + normalisation; two
    hidden channels get LayerNorm gains of 30, the activation outliers that make int8 lossy in trained BERTs."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from abharness.encoders import builtin_model_path

    root = tmp_path_factory.mktemp("tiny-mixed")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    bert = BertModel(config)
    with torch.no_grad():
        for layer in bert.encoder.layer:
            layer.attention.output.LayerNorm.weight[:2] *= 30.0
    bert.save_pretrained(root / "raw")
    AutoTokenizer.from_pretrained(str(builtin_model_path())).save_pretrained(root / "raw")
    st = SentenceTransformer(
        modules=[models.Transformer(str(root / "raw"), max_seq_length=64), models.Pooling(32, "mean"), models.Normalize()],
        device="cpu",
    )
    st.save(str(root / "model"), create_model_card=False)
    return root / "model"


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory, scifact_slice: RetrievalDataset) -> Path:
    root = tmp_path_factory.mktemp("beir-mixed") / "slice"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": d.title, "text": d.text}) + "\n"
                                               for i, d in scifact_slice.corpus.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n"
                                                for i, t in scifact_slice.queries.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q, rel in scifact_slice.qrels.items() for d, s in rel.items()))
    return root


@pytest.fixture(scope="module")
def tiny_graph(tiny_model: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("graph") / "fp32.onnx"
    export_fp32(tiny_model, out)
    return out


@pytest.fixture(scope="module")
def feeds(tiny_model: Path, scifact_slice: RetrievalDataset) -> list[dict[str, np.ndarray]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    texts = list(scifact_slice.queries.values())[:12]
    return [{k: np.asarray(v, dtype=np.int64) for k, v in tok(texts[i:i + 4], padding=True, return_tensors="np").items()
             if k in {"input_ids", "attention_mask"}} for i in range(0, len(texts), 4)]


def _run(file: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def _ops(file: Path) -> list[str]:
    import onnx

    model = onnx.load(str(file))
    onnx.checker.check_model(model)
    return [n.op_type for n in model.graph.node]


def test_roles_name_every_weight_matmul(tiny_graph: Path) -> None:
    roles = matmul_roles(tiny_graph)
    assert sorted(roles.values()) == sorted((layer, r) for layer in range(2) for r in ROLES)
    assert len(select_roles(tiny_graph, ["ffn-in"])) == 2
    assert [roles[n] for n in select_roles(tiny_graph, ["q", "k"], skip_layers=[-1])] == [(0, "q"), (0, "k")]
    assert sorted(roles[n] for n in select_units(tiny_graph, ["-1:qkv", "0:ffn-out", "7:q"])) == [
        (0, "ffn-out"), (1, "k"), (1, "q"), (1, "v")]
    with pytest.raises(ValueError, match="unit 'x:q'"):
        select_units(tiny_graph, ["x:q"])


def test_mixed_graph_quantizes_only_the_chosen_matmuls(tiny_graph: Path, feeds, tmp_path: Path) -> None:
    chosen = select_roles(tiny_graph, ["ffn-in"])
    quantize_matmuls(tiny_graph, tmp_path / "mixed.onnx", chosen)
    ops = _ops(tmp_path / "mixed.onnx")
    # per chosen MatMul one integer product; the other 10 weight MatMuls and the 4 attention products stay fp32
    assert ops.count("MatMulInteger") == len(chosen) == 2 and ops.count("MatMul") == 12 - 2 + 4
    ref, got = _run(tiny_graph, feeds[0]), _run(tmp_path / "mixed.onnx", feeds[0])
    assert got.shape == ref.shape and 0 < np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
    quantize_matmuls(tiny_graph, tmp_path / "none.onnx", [])
    np.testing.assert_array_equal(_run(tmp_path / "none.onnx", feeds[0]), ref)


def test_smoothing_is_exact_in_fp32_and_quantizes(tiny_graph: Path, feeds, tmp_path: Path) -> None:
    names = select_roles(tiny_graph, ROLES)
    smooth(tiny_graph, tmp_path / "smooth.onnx", names, feeds, alpha=0.5)
    ops = _ops(tmp_path / "smooth.onnx")
    # one scaling per distinct input and layer: Q=K=V, attn-out, ffn-in, ffn-out
    assert ops.count("Mul") == _ops(tiny_graph).count("Mul") + 2 * 4
    for feed in feeds:
        np.testing.assert_allclose(_run(tmp_path / "smooth.onnx", feed), _run(tiny_graph, feed), rtol=1e-4, atol=1e-4)
    build_variant("int8-smooth", tiny_graph, tmp_path / "int8-smooth.onnx", work=tmp_path, geometry={},
                  calibration=lambda: feeds)
    assert _ops(tmp_path / "int8-smooth.onnx").count("MatMulInteger") == 12


def test_fused_ffn_variant_is_valid(tiny_graph: Path, tiny_model: Path, feeds, tmp_path: Path) -> None:
    geometry = {"layers": 2, "heads": 2, "hidden": 32}
    build_variant("int8-fused-ffn", tiny_graph, tmp_path / "ffn.onnx", work=tmp_path, geometry=geometry)
    ops = _ops(tmp_path / "ffn.onnx")
    assert ops.count("Attention") == 2 and ops.count("MatMulInteger") == 4
    ref, got = _run(tiny_graph, feeds[1]), _run(tmp_path / "ffn.onnx", feeds[1])
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_gate_refuses_a_failing_mixed_variant_and_keeps_a_passing_one(tiny_model: Path, beir_dir: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "refused"
    # int8 of every MatMul moves some of these 30 queries' top 10 (the outlier channels feed the FFN input)
    with pytest.raises(ExportRefused, match=r"closest: int8-smooth with top-10 overlap .* nothing written"):
        export_onnx(str(tiny_model), beir_dir, out, variants=["int8-smooth"], min_overlap=1.0, progress=False,
                    doc_sample=0, measure_latency=False)
    assert not out.exists()
    # the same variants under thresholds they meet: written, with both rows in the frontier
    result = export_onnx(str(tiny_model), beir_dir, tmp_path / "ok", variants=["int8-mixed", "int8-smooth"],
                         min_overlap=0.9, progress=False, doc_sample=0, measure_latency=False)
    manifest = json.loads((tmp_path / "ok" / "onnx_manifest.json").read_text())
    assert [r["variant"] for r in manifest["frontier"]] == ["int8-mixed", "int8-smooth"]
    assert result.manifest.variant == "int8-mixed" and manifest["frontier"][1]["topk_overlap"] < 1.0
