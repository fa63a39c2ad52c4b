"""torch -> ONNX (fp32) and ONNX fp32 -> fp16, each checked with the onnx checker.

The graph is the `Detector`: input `images` (N, C, H, W) float32 in [0, 1], dynamic N; outputs
`recon_error` (N), `pattern_probs` (N, K), `residual` (N, 1, H, W).

We export with the TorchScript-based exporter (`dynamo=False`, passed explicitly since torch's
default changed): it writes one self-contained file, supports opset 17 (what TensorRT 8.5 on
JetPack 5.1 reads), and needs only `onnx`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from adegan.runtime.contract import INPUT_NAME, OUTPUT_NAMES
DEFAULT_OPSET = 17
# Ops kept in fp32 inside the fp16 graph: reductions and the softmax, where fp16 loses the most.
FP32_OPS = ("ReduceMean", "Softmax")
# With projected learned features (a `learned_basis` in the graph) their projection and their
# small bank, and every node that reads them, stay fp32: in d dimensions fp16 rounding moved the
# score by up to 0.011 z (d = 8; 0.008 at d = 64) against 0.002 for these kept in fp32, the
# same as the full features in fp16.
PROJECTED_VIEW_WEIGHTS = ("learned_basis", "learned_bank")


def torch2onnx(detector, path: Path, channels: int, image_size: int, opset: int = DEFAULT_OPSET) -> None:
    """Export the detector (eval mode) to one self-contained .onnx file with a dynamic batch."""
    import torch

    detector = detector.eval()
    example = torch.rand(2, channels, image_size, image_size, device=next(detector.parameters()).device)
    dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            detector, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    check_onnx(path)


def check_onnx(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def _separate_outputs(model) -> None:
    """Route every graph output through an Identity, so no output also feeds a node inside.

    Without this, onnxconverter-common's keep_io_types writes an invalid model when an output is
    consumed internally (here `pattern_probs` feeds G): a Conv gets fp32 input and fp16 weights.
    """
    from onnx import helper

    graph = model.graph
    for output in graph.output:
        internal = f"{output.name}__internal"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == output.name:
                    node.output[i] = internal
            for i, name in enumerate(node.input):
                if name == output.name:
                    node.input[i] = internal
        graph.node.append(helper.make_node("Identity", [internal], [output.name], name=f"{output.name}__out"))


def onnx_fp32_to_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic with fp32 inputs and outputs; checked and runnable in ORT."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        from adegan.errors import MissingDependencyError

        raise MissingDependencyError("--fp16 needs onnxconverter-common: pip install 'adegan[export]'") from exc
    model = onnx.load(str(source))
    _separate_outputs(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "float32 number ... will be truncated" for tiny weights
        kept = []
        if "learned_basis" in {weight.name for weight in model.graph.initializer}:
            kept = [node.name for node in model.graph.node if set(node.input) & set(PROJECTED_VIEW_WEIGHTS)]
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS),
                                                node_block_list=kept)
    onnx.save(half, str(target))
    check_onnx(target)


def embed_metadata(path: Path, key: str, value: dict) -> None:
    """Store a JSON document in the model's metadata_props (replacing an earlier one)."""
    import onnx

    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = key, json.dumps(value, sort_keys=True)
    onnx.save(model, str(path))


def read_metadata(path: Path, key: str) -> dict | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == key:
            return json.loads(prop.value)
    return None
