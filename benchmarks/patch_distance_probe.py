"""Probe: where a patch bundle's time goes in ONNX Runtime, and two bundles of one run side by side.

For each bundle (for instance one exported before a change to the graph and one after, from the
same run): ONNX Runtime's own profiler, milliseconds per image by node (one image per call, the
way `adegan score` calls it on a CPU), then images per second of bare ONNX Runtime, the bundles
alternating --rounds times so a slow spell of the machine touches each alike. With --products,
also the (L, D) x (D, M) product of a 256 px patch bank alone, written four ways (Gemm with a bias,
Gemm without, MatMul on a transposed constant, torch), each followed by the minimum per row.

    python benchmarks/patch_distance_probe.py BUNDLE [BUNDLE ...] [--rounds 3] [--products] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def session(model, profile: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = profile
    if profile:  # the profiler's file goes to the temporary folder, and is removed once read
        options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "adegan_patch_distance_probe")
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def image_size(bundle: Path) -> int:
    return json.loads((bundle / "adegan.json").read_text())["input"]["image_size"]


def profile_nodes(bundle: Path, runs: int = 20, top: int = 6) -> dict:
    """Milliseconds per image by node, from ONNX Runtime's profiler; the largest `top` and the total."""
    size = image_size(bundle)
    model = session(bundle / "model.onnx", profile=True)
    image = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    for _ in range(runs):
        model.run(None, {"images": image})
    profile_file = Path(model.end_profiling())
    events = json.loads(profile_file.read_text())
    profile_file.unlink()
    per_node = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[f"{event['args']['op_name']} {event['name'][:-len('_kernel_time')]}"] += event["dur"]
    return {"total_ms": round(sum(per_node.values()) / runs / 1000, 2),
            "largest_ms": {name: round(us / runs / 1000, 2) for name, us in per_node.most_common(top)}}


def alternating_rates(bundles: list[Path], rounds: int, images: int) -> dict:
    rates: dict[str, list[float]] = {str(bundle): [] for bundle in bundles}
    for _ in range(rounds):
        for bundle in bundles:
            size = image_size(bundle)
            batch = np.random.default_rng(0).random((images, 1, size, size), dtype=np.float32)
            model = session(bundle / "model.onnx")
            model.run(None, {"images": batch[:1]})
            start = time.perf_counter()
            for index in range(images):
                model.run(None, {"images": batch[index:index + 1]})
            rates[str(bundle)].append(round(images / (time.perf_counter() - start), 1))
    return rates


def median_ms(function, repeats: int = 15) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def products(rows: int = 961, dims: int = 256, bank_rows: int = 16384) -> dict:
    """The patch-to-bank product of a 256 px image alone, then a minimum per row, four ways."""
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from adegan.training.allocator import keep_freed_memory

    keep_freed_memory()  # as training and speed.py's torch-eager pipeline run: no page faults per product

    rng = np.random.default_rng(0)
    bank = rng.standard_normal((bank_rows, dims)).astype(np.float32)
    squared = (bank * bank).sum(1).astype(np.float32)
    queries = rng.standard_normal((rows, dims)).astype(np.float32)

    def graph(product, weights):
        nodes = [product, helper.make_node("ReduceMin", ["y"], ["z"], keepdims=0, axes=[1])]
        body = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [rows, dims])],
                                 [helper.make_tensor_value_info("z", TensorProto.FLOAT, [rows])],
                                 [numpy_helper.from_array(w, n) for n, w in weights.items()])
        return session(helper.make_model(body, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())

    variants = {
        "gemm_with_bias": graph(helper.make_node("Gemm", ["a", "bank", "sq"], ["y"], transB=1),
                                {"bank": bank, "sq": squared}),
        "gemm_without_bias": graph(helper.make_node("Gemm", ["a", "bank"], ["y"], transB=1), {"bank": bank}),
        "matmul_transposed_constant": graph(helper.make_node("MatMul", ["a", "bank"], ["y"]),
                                            {"bank": np.ascontiguousarray(bank.T)}),
    }
    result = {name: median_ms(lambda s=model: s.run(None, {"a": queries})) for name, model in variants.items()}
    torch_bank, torch_queries = torch.from_numpy(bank), torch.from_numpy(queries)
    with torch.no_grad():
        result["torch_matmul"] = median_ms(lambda: (torch_queries @ torch_bank.T).amin(1))
    return {"shape": [rows, dims, bank_rows], "gflop": round(2 * rows * dims * bank_rows / 1e9, 2), "ms": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("bundles", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=30, help="images per rate measurement")
    parser.add_argument("--products", action="store_true", help="also time the bare product four ways")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {"profile": {str(bundle): profile_nodes(bundle) for bundle in args.bundles}}
    print(json.dumps(result["profile"], indent=1), flush=True)
    result["images_per_second"] = alternating_rates(args.bundles, args.rounds, args.images)
    print(json.dumps(result["images_per_second"]), flush=True)
    if args.products:
        result["products"] = products()
        print(json.dumps(result["products"]), flush=True)
    if args.out:
        from benchmark_results import save_results

        save_results(args.out, args, result, "bare ONNX Runtime, one image per call")


if __name__ == "__main__":
    main()
