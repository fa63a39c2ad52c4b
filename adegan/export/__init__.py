"""Export: torch checkpoint -> ONNX (fp32, fp16) -> TensorRT engine, plus a manifest."""
