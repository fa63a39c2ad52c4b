"""Optional imports with a clear message naming the extra that provides them."""

from __future__ import annotations

import os

from adegan.errors import MissingDependencyError

_cv2 = None  # the module once imported: this is called for every image, twice


def require_cv2():
    """Return the cv2 module, or explain how to get it. OpenCV's own warnings (e.g. on a
    missing camera) are silenced unless OPENCV_LOG_LEVEL says otherwise: adegan reports errors."""
    global _cv2
    if _cv2 is not None:
        return _cv2
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependencyError(
            "OpenCV is not installed: run `pip install 'adegan[cpu]'` "
            "(on a Jetson, use the system OpenCV: a venv made with --system-site-packages)"
        ) from exc
    _cv2 = cv2
    return cv2

