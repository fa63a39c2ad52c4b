"""adegan: edge visual inspection with ADe-GAN.

Train on photos of good parts only; flag anything that does not look like them.
Heavy libraries (torch, onnx, tensorrt) are imported inside the functions that need them,
so importing this package, and `adegan --help`, stays instant.
"""

__version__ = "0.1.0"
