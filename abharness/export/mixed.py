"""Mixed-precision and smoothed int8 builders for the ONNX export (``abharness.export.variants`` calls them).

* ``quantize_matmuls``: dynamic int8 (per-channel weights, activations quantized per batch) of exactly the named
  MatMul nodes; every other node stays fp32. The building block of the per-MatMul sensitivity search
  (``loadtest/encoder_sensitivity.py``) and of the role-based mixed variants.
* ``matmul_roles``: (layer, role) of each weight MatMul of a BERT-like graph from the classic exporter, role one of
  ``q k v attn-out ffn-in ffn-out``; ``select_roles`` picks the nodes of some roles, ``select_units`` those of
  ``"LAYER:ROLE"`` units (``qkv`` = the three projections that share an input and fuse into one Attention).
* ``smooth``: SmoothQuant-style migration of activation outliers into the weights (Xiao et al. 2023,
  arXiv:2211.10438): for a MatMul ``X @ W`` with per-input-channel activation maxima ``a_j`` (calibrated) and weight
  row maxima ``w_j``, ``s_j = a_j^alpha / w_j^(1-alpha)``; the graph computes ``(X / s) @ (diag(s) W)``, identical in
  exact arithmetic, but the activation that dynamic int8 quantizes per tensor no longer has outlier channels.
  BERT is post-LayerNorm: the LayerNorm output is also the residual stream, so ``1/s`` cannot be folded into the
  LayerNorm's gain as in pre-LN models; it is an explicit ``Mul`` (one per distinct input, shared by Q, K and V,
  whose ``s`` uses the maxima over all three weights).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["ROLES", "quantize_matmuls", "matmul_roles", "select_roles", "select_units", "smooth", "activation_maxima"]

ROLES = ("q", "k", "v", "attn-out", "ffn-in", "ffn-out")
_ROLE_PATTERN = re.compile(
    r"layer\.(\d+)/(attention/self/query|attention/self/key|attention/self/value|attention/output/dense"
    r"|intermediate/dense|output/dense)/MatMul$")
_SHORT = {"attention/self/query": "q", "attention/self/key": "k", "attention/self/value": "v",
          "attention/output/dense": "attn-out", "intermediate/dense": "ffn-in", "output/dense": "ffn-out"}


def quantize_matmuls(src: Path, dst: Path, names: Sequence[str]) -> None:
    """Dynamic per-channel int8 of exactly the nodes ``names`` of ``src`` (every other node stays fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not names:
        shutil.copyfile(src, dst)
        return
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=list(names),
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def matmul_roles(model_file: Path) -> dict[str, tuple[int, str]]:
    """``{node name: (layer, role)}`` for the weight MatMuls whose names the classic exporter gave a BERT layer."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    out = {}
    for node in graph.node:
        m = _ROLE_PATTERN.search(node.name) if node.op_type == "MatMul" else None
        if m:
            out[node.name] = (int(m.group(1)), _SHORT[m.group(2)])
    return out


def select_roles(model_file: Path, roles: Sequence[str], *, skip_layers: Sequence[int] = ()) -> list[str]:
    """Names of the MatMuls of ``model_file`` with a role in ``roles``, outside ``skip_layers`` (negative = from the
    end). Empty when the graph's names are not the classic exporter's."""
    found = matmul_roles(model_file)
    layers = 1 + max((layer for layer, _ in found.values()), default=-1)
    skip = {s % layers for s in skip_layers} if layers else set()
    return [n for n, (layer, r) in found.items() if r in roles and layer not in skip]


def select_units(model_file: Path, units: Sequence[str]) -> list[str]:
    """Names of the MatMuls of the units ``"LAYER:ROLE"`` (ROLE one of ``ROLES`` or ``qkv`` for Q, K and V; a
    negative LAYER counts from the end). Units beyond the model's depth select nothing."""
    found = matmul_roles(model_file)
    layers = 1 + max((layer for layer, _ in found.values()), default=-1)
    wanted = set()
    for unit in units:
        layer, _, r = unit.partition(":")
        if r not in (*ROLES, "qkv") or not layer.lstrip("-").isdigit():
            raise ValueError(f"unit {unit!r}: expected LAYER:ROLE with ROLE in {', '.join((*ROLES, 'qkv'))}")
        index = int(layer) % layers if layers and int(layer) < 0 else int(layer)
        wanted.update((index, x) for x in (("q", "k", "v") if r == "qkv" else (r,)))
    return [n for n, key in found.items() if key in wanted]


def activation_maxima(model_file: Path, inputs: Sequence[str],
                      feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each tensor in ``inputs`` over the non-padding tokens of ``feeds``."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_file))
    present = {o.name for o in model.graph.output}
    for name in inputs:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = list(inputs)
    accepted = {i.name for i in session.get_inputs()}
    maxima: dict[str, np.ndarray] = {}
    for feed in feeds:
        values = session.run(wanted, {k: v for k, v in feed.items() if k in accepted})
        mask = feed["attention_mask"].astype(bool)
        for name, value in zip(wanted, values):
            real = np.abs(value[mask])  # (tokens, channels)
            col = real.max(axis=0)
            maxima[name] = col if name not in maxima else np.maximum(maxima[name], col)
    return maxima


def smooth(src: Path, dst: Path, names: Sequence[str], feeds: Sequence[dict[str, np.ndarray]], *,
           alpha: float = 0.5) -> None:
    """Write ``src`` with the inputs of the MatMuls ``names`` smoothed (see the module docstring) to ``dst``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = [n for n in graph.node if n.name in set(names) and n.op_type == "MatMul" and n.input[1] in inits]
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        by_input.setdefault(node.input[0], []).append(node)
    maxima = activation_maxima(src, list(by_input), feeds)
    for i, (x, consumers) in enumerate(by_input.items()):
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in consumers]
        w_max = np.max(np.stack([np.abs(w).max(axis=1) for w in weights]), axis=0)
        a_max = maxima[x]
        scale = (np.clip(a_max, 1e-5, None) ** alpha / np.clip(w_max, 1e-5, None) ** (1 - alpha)).astype(np.float32)
        scale = np.clip(scale, 1e-2, 1e2)
        inv = f"smooth_{i}_inverse_scale"
        out = f"smooth_{i}_output"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv))
        graph.node.append(onnx.helper.make_node("Mul", [x, inv], [out], name=f"smooth_{i}_Mul"))
        for node, w in zip(consumers, weights):
            new_w = f"{node.input[1]}_smoothed"
            graph.initializer.append(numpy_helper.from_array((w * scale[:, None]).astype(np.float32), new_w))
            node.input[0], node.input[1] = out, new_w
    # the appended Mul nodes must come before their consumers: re-sort the graph topologically
    _toposort(graph)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save(model, str(dst))


def _toposort(graph) -> None:  # noqa: ANN001 - onnx.GraphProto
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
