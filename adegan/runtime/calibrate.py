"""`adegan calibrate`: recompute mu_e, sigma_e and the threshold from on-site good images,
with the runtime only (no torch), and update the bundle's manifest atomically.

The previous manifest is kept as `adegan.previous.json`, so a bad calibration can be undone by
renaming it back. Model files do not change, so their hashes stay valid.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from adegan.console import log as default_log
from adegan.errors import UsageError
from adegan.runtime.file_scoring import expand_inputs
from adegan.runtime.bundle import MANIFEST_NAME
from adegan.runtime.files import atomic_write_text
from adegan.runtime.images import ImageDecodeError, read_image, to_float
from adegan.runtime.model import BundleModel
from adegan.runtime.score import calibrate

PREVIOUS_NAME = "adegan.previous.json"
MIN_IMAGES = 20


def calibrate_bundle(bundle: Path, good: list[str], target_fpr: float | None = None, batch_size: int = 64,
                     backend: str = "auto", log=default_log) -> tuple[dict, dict]:
    """Returns (old score section, new score section) and rewrites the manifest."""
    model = BundleModel(bundle, backend=backend)
    paths = expand_inputs(good)
    uint8, skipped = [], 0
    for path in paths:
        try:
            uint8.append(model.preprocess(read_image(path)))
        except ImageDecodeError as exc:
            log(f"skipped: {exc}")
            skipped += 1
    if len(uint8) < MIN_IMAGES:
        raise UsageError(f"{' '.join(good)}: {len(uint8)} readable good image(s); calibration needs at least {MIN_IMAGES}")
    errors, probs = [], []
    for start in range(0, len(uint8), batch_size):
        outputs = model.infer(to_float(np.stack(uint8[start:start + batch_size])))
        errors.append(outputs.recon_error)
        probs.append(outputs.pattern_probs)
    old = dict(model.manifest["score"])
    fpr = old["target_fpr"] if target_fpr is None else target_fpr
    if len(uint8) * fpr < 1:
        log(f"note: {len(uint8)} images are few for a {fpr:g} false-positive rate; the threshold is the top image's score")
    new = calibrate(np.concatenate(errors), np.concatenate(probs), fpr, old["score_mode"]).to_dict()
    new.update({"source": f"on-site: {' '.join(good)}",
                "calibrated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "skipped_images": skipped})
    manifest_path = Path(bundle) / MANIFEST_NAME
    shutil.copyfile(manifest_path, Path(bundle) / PREVIOUS_NAME)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["score"] = new
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return old, new
