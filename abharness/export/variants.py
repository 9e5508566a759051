"""Build ONNX variants of a sentence-transformers model's transformer: fp32, fused fp32, int8 (dynamic, per-channel,
with sensitive layers left in fp32, static with calibration).

Every variant takes token ids, attention mask (and token type ids when the model has them) and returns the token
embeddings (batch, seq, dim); pooling and normalisation happen outside the graph (``abharness.encoders.onnx.pool``).
Axes 0 and 1 are dynamic, so each batch is padded only to its own longest text.

* ``fp32``: the exported graph as is (ONNX Runtime still applies its basic fusions when it loads the file).
* ``fp32-fused``: ``onnxruntime.transformers.optimizer`` for BERT-like models: attention, layer-norm,
  skip-layer-norm, GELU and embedding-layer-norm fusion, written offline.
* ``int8-dyn``, ``int8-dyn-pc``: dynamic quantization of every MatMul (weights int8, activations quantized per
  batch), per tensor or per channel.
* ``int8-fused``: dynamic quantization of the fused graph (Attention and MatMul).
* ``int8-keep-ffn-out``: as ``int8-dyn-pc`` but the feed-forward output projections (whose inputs carry the
  GELU outliers that hurt int8 most in BERT-like models) stay fp32.
* ``int8-keep-last``: as ``int8-dyn-pc`` but the last layer's MatMuls stay fp32.
* ``int8-static``: static QDQ quantization (per-channel weights, activations calibrated on the data set's train
  queries, or the test queries when there is no train split, with percentile calibration).
* ``int8-block``: weight-only block-wise int8 (``MatMulNBits``, blocks of 32 along the reduction axis, symmetric,
  accuracy level 4), which keeps activation outliers out of the weight scales.
* ``int8-smooth``: SmoothQuant-style scaling (alpha 0.5, activation maxima calibrated like ``int8-static``) on the
  inputs of every weight MatMul, then dynamic per-channel int8 of all of them (``abharness.export.mixed.smooth``).
* ``int8-mixed``: mixed precision from the per-MatMul sensitivity search (``loadtest/encoder_sensitivity.py``):
  dynamic per-channel int8 of the MatMuls in ``MIXED_UNITS`` only, the rest fp32; built on the fused graph when
  those MatMuls survive the fusion (FFN and attention-output units do), else on the plain export.
* ``int8-fused-ffn``: the fused graph (``fp32-fused``) with only the feed-forward MatMuls (in and out) in int8,
  attention kept in fused fp32; ``int8-fused-ffn-in``: the same with only the FFN input projections in int8.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abharness.errors import ModelError
from abharness.export.mixed import ROLES, quantize_matmuls, select_roles, select_units, smooth

__all__ = ["VARIANTS", "FP32_VARIANTS", "INT8_VARIANTS", "export_fp32", "build_variant", "model_geometry"]

FP32_VARIANTS = ("fp32", "fp32-fused")
INT8_VARIANTS = ("int8-dyn", "int8-dyn-pc", "int8-fused", "int8-keep-ffn-out", "int8-keep-last", "int8-static",
                 "int8-block", "int8-smooth", "int8-mixed", "int8-fused-ffn", "int8-fused-ffn-in")
# the "LAYER:ROLE" units int8-mixed quantizes (the rest stay fp32): the set loadtest/encoder_sensitivity.py chose
# for MiniLM-L6 on SciFact train queries: the last layer's feed-forward MatMuls (11 % of the weight MACs); any third
# unit, and every FFN MatMul of layers 0-4 alone, costs more than 1 % of the top-10 overlap (docs/performance.md)
MIXED_UNITS = ("-1:ffn-in", "-1:ffn-out")
VARIANTS = FP32_VARIANTS + INT8_VARIANTS
OPSET = 17


def model_geometry(st_model: Any) -> dict[str, int]:
    """Layers, heads and hidden size of the transformer inside a ``SentenceTransformer`` (0 when unknown)."""
    config = getattr(st_model[0].auto_model, "config", None)
    return {
        "layers": int(getattr(config, "num_hidden_layers", 0) or 0),
        "heads": int(getattr(config, "num_attention_heads", 0) or 0),
        "hidden": int(getattr(config, "hidden_size", 0) or 0),
    }


def export_fp32(model_dir: Path, out_file: Path) -> list[str]:
    """Export the transformer of ``model_dir`` to ``out_file`` with eager attention (the pattern ONNX Runtime's fusions
    recognise); return the input names. Tries the classic exporter, then ``torch.onnx.export(..., dynamo=True)``."""
    import torch
    from transformers import AutoModel

    try:
        auto = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()
    except Exception as exc:  # noqa: BLE001 - HF raises many kinds
        raise ModelError(f"cannot load the transformer of {model_dir} for export: {exc}") from exc
    uses_types = getattr(auto.config, "type_vocab_size", 0) > 0 and "token_type_ids" in auto.forward.__code__.co_varnames
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if uses_types else [])

    class _Tokens(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, args))).last_hidden_state

    wrapped = _Tokens(auto).eval()
    sample = tuple(torch.ones(2, 16, dtype=torch.long) if n != "token_type_ids" else torch.zeros(2, 16, dtype=torch.long)
                   for n in names)
    errors: list[str] = []
    # the exporters warn a lot (tracer warnings, deprecations); under `-W error` a warning would abort the export
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapped, sample, str(out_file), input_names=names, output_names=["token_embeddings"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "token_embeddings"]},
                opset_version=OPSET, dynamo=False,
            )
            return names
        except Exception as exc:  # noqa: BLE001 - fall back to the dynamo exporter
            errors.append(f"classic exporter: {exc}")
        try:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=8192)
            program = torch.onnx.export(
                wrapped, sample, input_names=names, output_names=["token_embeddings"],
                dynamic_shapes=tuple({0: batch, 1: seq} for _ in names), dynamo=True, opset_version=18,
            )
            program.save(str(out_file))
            return names
        except Exception as exc:  # noqa: BLE001
            errors.append(f"dynamo exporter: {exc}")
    raise ModelError(f"cannot export {model_dir} to ONNX ({'; '.join(e.splitlines()[0] for e in errors)})")


def _fuse(src: Path, dst: Path, geometry: dict[str, int]) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(src), model_type="bert", num_heads=geometry["heads"], hidden_size=geometry["hidden"], opt_level=1,
        use_gpu=False, only_onnxruntime=False,
    )
    optimized.save_model_to_file(str(dst))


def _matmuls(model_file: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul"]


def _ffn_out_nodes(names: Sequence[str]) -> list[str]:
    # classic exporter names: /inner/encoder/layer.3/output/dense/MatMul (FFN out) vs .../attention/output/dense/...
    return [n for n in names if re.search(r"layer\.\d+/output/dense/MatMul", n)]


def _last_layer_nodes(names: Sequence[str], layers: int) -> list[str]:
    return [n for n in names if f"layer.{layers - 1}/" in n]


def _dynamic(src: Path, dst: Path, *, per_channel: bool, exclude: Sequence[str] = ()) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=list(exclude),
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )


class _Calibration:
    """``CalibrationDataReader`` over pre-tokenised batches."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _static(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], work: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "static-pre.onnx"
    # the pre-processing and the calibrator drop scratch files into the current directory: keep them in `work`
    with contextlib.chdir(work):
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(dst), _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, op_types_to_quantize=["MatMul"],
            calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.99},
        )


def _block(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
                                     algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def _units_or_fail(model_file: Path, units: Sequence[str]) -> list[str]:
    names = select_units(model_file, units)
    if not names:
        raise ValueError(f"no MatMul of {model_file.name} is named like the units {', '.join(units)} of a BERT layer "
                         "(the classic exporter's names); this variant needs them")
    return names


def _roles_or_fail(model_file: Path, roles: Sequence[str]) -> list[str]:
    names = select_roles(model_file, roles)
    if not names:  # a ValueError is recorded in the frontier as this variant's error, the others still run
        raise ValueError(f"no MatMul of {model_file.name} is named like a BERT layer's {'/'.join(roles)} projection "
                         "(the classic exporter's names); this variant needs them")
    return names


def build_variant(
    variant: str, fp32_file: Path, dst: Path, *, work: Path, geometry: dict[str, int],
    calibration: Callable[[], list[dict[str, np.ndarray]]] | None = None,
) -> None:
    """Write ``variant`` of the exported ``fp32_file`` to ``dst`` (scratch files go to ``work``)."""
    if variant not in VARIANTS:
        raise ModelError(f"unknown ONNX variant {variant!r}; valid: {', '.join(VARIANTS)}")
    fused = work / "fp32-fused.onnx"
    on_fused = {"fp32-fused", "int8-fused", "int8-fused-ffn", "int8-fused-ffn-in", "int8-mixed"}
    if variant in on_fused and not fused.is_file():
        _fuse(fp32_file, fused, geometry)
    if variant == "fp32":
        shutil.copyfile(fp32_file, dst)
    elif variant == "fp32-fused":
        shutil.copyfile(fused, dst)
    elif variant == "int8-dyn":
        _dynamic(fp32_file, dst, per_channel=False)
    elif variant == "int8-dyn-pc":
        _dynamic(fp32_file, dst, per_channel=True)
    elif variant == "int8-fused":
        _dynamic(fused, dst, per_channel=True)
    elif variant == "int8-keep-ffn-out":
        _dynamic(fp32_file, dst, per_channel=True, exclude=_ffn_out_nodes(_matmuls(fp32_file)))
    elif variant == "int8-keep-last":
        _dynamic(fp32_file, dst, per_channel=True, exclude=_last_layer_nodes(_matmuls(fp32_file), geometry["layers"]))
    elif variant == "int8-block":
        _block(fp32_file, dst)
    elif variant == "int8-mixed":
        plain = _units_or_fail(fp32_file, MIXED_UNITS)
        on_fused = select_units(fused, MIXED_UNITS)
        if len(on_fused) == len(plain):
            quantize_matmuls(fused, dst, on_fused)
        else:
            quantize_matmuls(fp32_file, dst, plain)
    elif variant == "int8-fused-ffn":
        quantize_matmuls(fused, dst, _roles_or_fail(fused, ("ffn-in", "ffn-out")))
    elif variant == "int8-fused-ffn-in":
        quantize_matmuls(fused, dst, _roles_or_fail(fused, ("ffn-in",)))
    elif variant == "int8-smooth":
        if calibration is None:
            raise ModelError("int8-smooth needs calibration texts; pass a data set with queries")
        names = _roles_or_fail(fp32_file, ROLES)
        smooth(fp32_file, work / "smoothed.onnx", names, calibration(), alpha=0.5)
        quantize_matmuls(work / "smoothed.onnx", dst, names)
    else:
        if calibration is None:
            raise ModelError("int8-static needs calibration texts; pass a data set with queries")
        _static(fp32_file, dst, calibration(), work)
