"""Training side (torch): model, losses, data, training loop, evaluation.

Importing this package does not import torch; its modules do.
"""

from adegan.errors import MissingDependencyError


def require_torch():
    """Return the torch module, or explain how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "PyTorch is not installed: run `pip install -c constraints-cpu.txt 'adegan[train]'` "
            "(CPU) or install a CUDA build of torch, then `pip install 'adegan[train]'`"
        ) from exc
    return torch
