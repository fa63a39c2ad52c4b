"""Runtime layer: numpy, OpenCV, ONNX Runtime or TensorRT. Never imports torch.

Everything here is shared with training so that the deployed path computes exactly what
training and evaluation computed: image preprocessing and the abnormality score.
"""
