"""A Triton Inference Server model repository for the bundle's ONNX model.

Layout: DIR/<name>/config.pbtxt and DIR/<name>/1/model.onnx. `recon_error` has only the batch
dimension, which Triton expresses as `dims: [ 1 ]` with `reshape: { shape: [ ] }`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from adegan.runtime.files import atomic_write_text


def triton_config(name: str, channels: int, image_size: int, n_patterns: int, max_batch: int,
                  fp16: bool, manifest: dict) -> str:
    """config.pbtxt text (protobuf text format of Triton's ModelConfig)."""
    accelerator = ""
    if fp16:
        accelerator = """
optimization {
  execution_accelerators {
    gpu_execution_accelerator [
      {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" }
      }
    ]
  }
}
"""
    from google.protobuf import text_encoding  # protobuf comes with onnx

    manifest_text = json.dumps({k: v for k, v in manifest.items() if k not in ("files", "parity")}, sort_keys=True)
    quoted = '"' + text_encoding.CEscape(manifest_text, as_utf8=True) + '"'
    return f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch}
input [
  {{
    name: "images"
    data_type: TYPE_FP32
    dims: [ {channels}, {image_size}, {image_size} ]
  }}
]
output [
  {{
    name: "recon_error"
    data_type: TYPE_FP32
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }},
  {{
    name: "pattern_probs"
    data_type: TYPE_FP32
    dims: [ {n_patterns} ]
  }},
  {{
    name: "residual"
    data_type: TYPE_FP32
    dims: [ 1, {image_size}, {image_size} ]
  }}
]
dynamic_batching {{ }}
instance_group [ {{ kind: KIND_AUTO }} ]
{accelerator}parameters {{
  key: "adegan_manifest"
  value: {{ string_value: {quoted} }}
}}
"""


def write_triton_repository(repository: Path, name: str, onnx_path: Path, manifest: dict,
                            max_batch: int, fp16: bool) -> Path:
    """Write (or replace) DIR/<name>/ ; returns the model folder."""
    model_dir = Path(repository) / name
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, version_dir / "model.onnx")
    text = triton_config(name, manifest["input"]["channels"], manifest["input"]["image_size"],
                         manifest["n_patterns"], max_batch, fp16, manifest)
    atomic_write_text(model_dir / "config.pbtxt", text)
    return model_dir
