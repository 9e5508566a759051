"""Built-in model loads offline; fingerprints are stable and sensitive to weights/config; the embedding cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from abharness.encoders import builtin_model_path, encode_cached, fingerprint_dir, load_encoder, model_fingerprint
from abharness.encoders.cache import cache_path
from abharness.errors import ConfigError, ModelError


@pytest.mark.model
def test_minilm_loads_offline_and_normalises(minilm) -> None:
    assert minilm.dim == 384 and minilm.name == "minilm"
    texts = ["Aspirin reduces the risk of heart attack.", "x", "A much longer sentence " * 20]
    vectors = minilm.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # length-sorting inside encode must not permute rows
    alone = np.vstack([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-4)
    assert minilm.encode([]).shape == (0, 384)


def test_encode_sorted_batches_by_the_given_lengths_and_keeps_input_order() -> None:
    from abharness.encoders.st import encode_sorted

    texts = ["aaaaaaaa", "b", "cccc", "dd", "eeeeee", "f"]
    tokens = [1, 9, 5, 9, 1, 5]  # deliberately unrelated to the character counts
    batches: list[list[str]] = []

    def run(batch: list[str]) -> np.ndarray:
        batches.append(batch)
        return np.array([[float(texts.index(t)), 1.0] for t in batch], dtype=np.float32)

    out = encode_sorted(texts, 2, run, batch_size=2, show_progress=False, kind="document", lengths=tokens)
    assert batches == [["b", "dd"], ["cccc", "f"], ["aaaaaaaa", "eeeeee"]]  # longest first, ties in input order
    np.testing.assert_array_equal(out[:, 0], np.arange(len(texts)))  # rows back in input order
    batches.clear()
    encode_sorted(texts, 2, run, batch_size=2, show_progress=False, kind="document")  # no lengths: characters
    assert batches == [["aaaaaaaa", "eeeeee"], ["cccc", "dd"], ["b", "f"]]
    with pytest.raises(ModelError, match="one length per text"):
        encode_sorted(texts, 2, run, batch_size=2, show_progress=False, kind="document", lengths=[1, 2])


@pytest.mark.model
def test_minilm_batches_documents_by_token_count(minilm, monkeypatch: pytest.MonkeyPatch) -> None:
    # characters and tokens disagree here: a long chemical name is many tokens in few characters
    texts = ["the cat sat on the mat " * 3, "2-acetoxybenzoic acid N,N'-dicyclohexylcarbodiimide",
             "a b c", "dogs " * 30, "x" * 40, "Aspirin reduces the risk of heart attack."]
    lengths = minilm.token_lengths(texts)
    tokenizer = minilm.model[0].tokenizer
    assert lengths == [len(tokenizer(t, truncation=True, max_length=minilm.model.max_seq_length)["input_ids"])
                       for t in texts]
    assert minilm.token_lengths(["word " * 1000]) == [minilm.model.max_seq_length]  # counted after truncation
    seen: list[list[str]] = []
    original = minilm.model.encode
    monkeypatch.setattr(minilm.model, "encode", lambda batch, **kw: seen.append(list(batch)) or original(batch, **kw))
    vectors = minilm.encode(texts, batch_size=2, kind="document")
    by_tokens = sorted(range(len(texts)), key=lambda i: -lengths[i])
    assert seen == [[texts[i] for i in by_tokens[j:j + 2]] for j in range(0, len(texts), 2)]
    seen.clear()
    minilm.encode(texts[:2], batch_size=2, kind="document")  # one batch: nothing to sort, no tokenizer pass needed
    assert seen == [sorted(texts[:2], key=len, reverse=True)]
    monkeypatch.setattr(minilm.model, "encode", original)
    alone = np.vstack([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)


@pytest.mark.model
def test_encoding_progress_names_the_texts_in_plain_english(minilm, capsys) -> None:
    minilm.encode(["a query"], show_progress=True, kind="query")
    minilm.encode(["a document"], show_progress=True, kind="document")
    out = capsys.readouterr().out
    assert "encoding queries" in out and "encoding documents" in out and "querys" not in out


@pytest.mark.model
def test_minilm_ranks_paraphrase_above_unrelated(minilm) -> None:
    q, para, other = minilm.encode(["a man is playing guitar", "someone plays a guitar", "stock markets fell today"])
    assert q @ para > q @ other + 0.3


def test_fingerprint_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    src = builtin_model_path()
    first = fingerprint_dir(src)
    assert first == fingerprint_dir(src) and len(first) == 16 and int(first, 16) >= 0
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert fingerprint_dir(copy) == first
    (copy / "README.md").write_text("changed card", encoding="utf-8")
    (copy / "abharness_manifest.json").write_text("{}", encoding="utf-8")
    assert fingerprint_dir(copy) == first  # docs and our own manifest are not the model
    config = json.loads((copy / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    config["pooling_mode_mean_tokens"] = False
    (copy / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    changed_config = fingerprint_dir(copy)
    assert changed_config != first
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert fingerprint_dir(copy) not in {first, changed_config}


def test_fingerprint_refuses_non_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no weight file"):
        fingerprint_dir(tmp_path)
    with pytest.raises(ModelError, match="not a directory"):
        model_fingerprint(tmp_path / "missing")


def test_load_encoder_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a sentence-transformers model directory"):
        load_encoder(tmp_path / "empty")
    # Offline by default: a mistyped name is refused at once, naming the value and the fix, with no hub request.
    monkeypatch.delenv("ABHARNESS_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(ModelError, match=r"'no-such-org/no-such-model': no such model directory.*offline.*"
                                         r"ABHARNESS_ALLOW_DOWNLOAD=1"):
        load_encoder("no-such-org/no-such-model")
    # Opted in (but HF_HUB_OFFLINE=1 in the tests): the hub path is tried and its failure is one ModelError.
    monkeypatch.setenv("ABHARNESS_ALLOW_DOWNLOAD", "1")
    with pytest.raises(ModelError, match="cannot load model 'no-such-org/no-such-model' as a hub id"):
        load_encoder("no-such-org/no-such-model")


def test_a_mistyped_model_fails_fast_without_touching_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub retry spam: the check happens before sentence-transformers (or huggingface_hub) is used at all."""
    import huggingface_hub

    monkeypatch.delenv("ABHARNESS_ALLOW_DOWNLOAD", raising=False)
    calls: list[object] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append(a))
    with pytest.raises(ModelError, match="minilmm"):
        load_encoder("minilmm")
    assert calls == []


@pytest.mark.model
def test_encoder_from_directory_has_directory_fingerprint(minilm) -> None:
    enc = load_encoder(builtin_model_path())
    assert enc.fingerprint == minilm.fingerprint == model_fingerprint(minilm)


def test_encode_cached_reuses_file(bow, tmp_path: Path) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon"]
    first = encode_cached(bow, texts, key="corpus-1", cache_dir=tmp_path, progress=False)
    assert bow.calls == [3]
    assert cache_path(bow, texts, key="corpus-1", kind="document", cache_dir=tmp_path).is_file()
    second = encode_cached(bow, texts, key="corpus-1", cache_dir=tmp_path, progress=False)
    assert bow.calls == [3]
    np.testing.assert_array_equal(first, second)
    encode_cached(bow, texts[:2], key="corpus-1", cache_dir=tmp_path, progress=False)  # other texts, same key
    encode_cached(bow, texts, key="corpus-1", cache_dir=tmp_path, progress=False, kind="query")
    assert bow.calls == [3, 2, 3]
    with pytest.raises(ConfigError):
        encode_cached(bow, texts, key="", cache_dir=tmp_path)


def test_encode_cached_uses_env_cache_dir(bow) -> None:
    encode_cached(bow, ["one"], key="k", progress=False)
    assert bow.calls == [1]
    encode_cached(bow, ["one"], key="k", progress=False)
    assert bow.calls == [1]


def test_corrupt_cache_file_is_recomputed(bow, tmp_path: Path) -> None:
    texts = ["alpha", "beta"]
    path = cache_path(bow, texts, key="k", kind="document", cache_dir=tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npy file")
    out = encode_cached(bow, texts, key="k", cache_dir=tmp_path, progress=False)
    assert out.shape == (2, bow.dim) and bow.calls == [2]


class _RecordingTorchModel:
    """Stands in for a SentenceTransformer: records the thread and the torch threads each batch ran with."""

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.seen: list[tuple[str, int]] = []

    def get_embedding_dimension(self) -> int:
        return 4

    def __len__(self) -> int:
        return 0  # no tokenizer module: batches by characters

    def encode(self, batch: list[str], **kw: object) -> np.ndarray:
        import threading
        import time

        import torch

        self.seen.append((threading.current_thread().name, torch.get_num_threads()))
        time.sleep(0.01)
        rows = np.array([[len(t), self.offset, 1.0, 0.0] for t in batch], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_encode_cached_side_by_side_runs_two_torch_models_at_once_one_thread_each(
    tmp_path: Path, bow, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from abharness.encoders import SentenceTransformerEncoder
    from abharness.encoders.cache import encode_cached_side_by_side

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        models = [_RecordingTorchModel(1.0), _RecordingTorchModel(2.0)]
        encs = [SentenceTransformerEncoder(m, name=f"m{i}", fingerprint=f"fake{i}") for i, m in enumerate(models)]
        texts = [f"document {'x' * i}" for i in range(10)]
        cached_texts = ["already cached"]
        encode_cached(bow, cached_texts, key="c", cache_dir=tmp_path, progress=False)
        bow.calls.clear()
        jobs = [(encs[0], texts, "k"), (bow, cached_texts, "c"), (encs[1], texts, "k")]
        out = encode_cached_side_by_side(jobs, cache_dir=tmp_path, batch_size=3, progress=False)
        assert torch.get_num_threads() == 2  # restored
        assert bow.calls == []  # a cached job is read, not encoded
        for enc, got in zip([encs[0], bow, encs[1]], out):
            assert got.shape[1] == enc.dim
        for m in models:
            assert len(m.seen) == 4  # 10 texts in batches of 3
            assert {n for n, _ in m.seen} == {next(iter(m.seen))[0]} and m.seen[0][0].startswith("encode-side-by-side")
            assert {t for _, t in m.seen} == {1}
        assert models[0].seen[0][0] != models[1].seen[0][0]  # two threads, one per model
        # the same rows encode_cached gives, in input order, and they are now cached
        for enc, got in zip(encs, [out[0], out[2]]):
            np.testing.assert_allclose(got, enc.encode(texts, batch_size=3), atol=1e-6)
            np.testing.assert_array_equal(np.load(cache_path(enc, texts, key="k", kind="document",
                                                             cache_dir=tmp_path)), got)
        # one torch job, or one torch thread: one after the other in the calling thread
        for m in models:
            m.seen.clear()
        torch.set_num_threads(1)
        encode_cached_side_by_side([(encs[0], texts, "k2"), (encs[1], texts, "k2")], cache_dir=tmp_path,
                                   batch_size=5, progress=False)
        assert {n for m in models for n, _ in m.seen} == {"MainThread"}
    finally:
        torch.set_num_threads(before)


def test_corpus_cache_job_is_where_build_index_reads_its_embeddings(bow, scifact_slice, tmp_path: Path) -> None:
    from abharness.index.faiss_index import build_index, corpus_cache_job

    enc, texts, key = corpus_cache_job(bow, scifact_slice)
    encode_cached(enc, texts, key=key, progress=False, kind="document")
    bow.calls.clear()
    build_index(bow, scifact_slice, tmp_path / "index", progress=False)
    assert bow.calls == []  # built from the cache entry written above, nothing encoded again
