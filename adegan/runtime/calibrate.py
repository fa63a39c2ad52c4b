"""`adegan calibrate`: recompute mu_e, sigma_e and the threshold from on-site good images,
with the runtime only (no torch), and update the bundle's manifest atomically.

Every manifest a calibration replaces is kept, timestamped, in `calibrations/` inside the bundle
(`adegan.<UTC time>.json`), so any earlier calibration can be restored by copying it back to
`adegan.json`; `adegan.previous.json` is the latest of them. Model files do not change, so their
hashes stay valid.

Good images must have the bundle's channel layout (gray for a gray model, colour for a colour
one): a colour photo given to a gray model would be calibrated on different pixels than the
line will show. `convert` turns them into the model's layout instead, with a notice.
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
from adegan.runtime.images import ImageDecodeError, is_grayscale, load_files, to_float
from adegan.runtime.model import BundleModel
from adegan.runtime.score import calibrate

PREVIOUS_NAME = "adegan.previous.json"
HISTORY_FOLDER = "calibrations"
MIN_IMAGES = 20


def _good_image(model: BundleModel, path: str) -> tuple[tuple, int]:
    """((model input, whether the file is gray, None) or (None, None, why not), pixels decoded).
    A file stored as gray, for a gray model, comes decoded straight to gray (BundleModel.load)."""
    try:
        image, model_input = model.load(path)
    except ImageDecodeError as exc:
        return (None, None, str(exc)), 0
    return (model_input, image.ndim == 2 or is_grayscale(image), None), image.shape[0] * image.shape[1]


def calibrate_bundle(bundle: Path, good: list[str], target_fpr: float | None = None, batch_size: int = 64,
                     backend: str = "auto", log=default_log, verify: bool = True,
                     convert: bool = False) -> tuple[dict, dict]:
    """Returns (old score section, new score section) and rewrites the manifest."""
    with BundleModel(bundle, backend=backend, verify=verify) as model:  # the backend is released at the end
        paths = expand_inputs(good)
        uint8, skipped, mismatched = [], 0, []
        for path, (image, gray, error) in zip(paths, load_files(lambda path: _good_image(model, path), paths)):
            if error:
                log(f"skipped: {error}")
                skipped += 1
                continue
            if (1 if gray else 3) != model.channels:
                mismatched.append(path)
            uint8.append(image)
        if mismatched:
            kinds = {1: "gray", 3: "colour"}
            wanted, found = kinds[model.channels], kinds[4 - model.channels]
            if not convert:
                raise UsageError(f"{mismatched[0]} (and {len(mismatched) - 1} more) is {found} but the bundle's model "
                                 f"is {wanted}; give {wanted} images, or pass --convert-channels to convert them")
            log(f"note: converted {len(mismatched)} {found} image(s) to {wanted}, as the model sees them")
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
    keep_in_history(manifest_path)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["score"] = new
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return old, new


def keep_in_history(manifest_path: Path) -> Path:
    """Copy the manifest about to be replaced to calibrations/adegan.<UTC time>.json (never over
    an earlier copy) and to adegan.previous.json; returns the history copy."""
    history = manifest_path.parent / HISTORY_FOLDER
    history.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    kept = history / f"adegan.{stamp}.json"
    counter = 1
    while kept.exists():
        kept, counter = history / f"adegan.{stamp}-{counter}.json", counter + 1
    shutil.copyfile(manifest_path, kept)
    shutil.copyfile(manifest_path, manifest_path.parent / PREVIOUS_NAME)
    return kept
