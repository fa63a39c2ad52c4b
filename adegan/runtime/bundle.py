"""The deployable bundle: a folder with model files and the manifest `adegan.json` (contract.py).

Export writes it; the runtime reads and verifies it here, with numpy and the standard library
only. A bundle whose files do not match the manifest's sha256 is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from adegan.errors import AdeganError
from adegan.runtime.contract import MANIFEST_KIND, MANIFEST_NAME, SCHEMA_VERSION


# What the runtime reads from a manifest; a manifest without one of these is refused up front.
REQUIRED_FIELDS = {"input": ("channels", "image_size", "colour_order"),
                   "score": ("mu_e", "sigma_e", "score_mode", "threshold", "target_fpr", "n_images")}


def require_listed(bundle: Path, manifest: dict, name: str, verify: bool) -> None:
    """A model file the runtime is about to load must be one the manifest hashes (and checked)."""
    if verify and name not in manifest.get("files", {}):
        raise BundleError(f"{Path(bundle) / name}: not listed in the manifest's file hashes, so it was not made by "
                          f"this export; re-export the bundle, or pass --unverified-bundle if you trust it")


class BundleError(AdeganError):
    """A bundle that is missing, incomplete, tampered with, or from another schema."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def is_bundle(folder: Path) -> bool:
    return (Path(folder) / MANIFEST_NAME).is_file()


def load_manifest(bundle: Path, verify: bool = True) -> dict:
    """Read `adegan.json`; with `verify`, check every listed file's sha256."""
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle}: no {MANIFEST_NAME}; give a folder written by `adegan export`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable manifest ({exc}); re-export the bundle") from exc
    if manifest.get("kind") != MANIFEST_KIND:
        raise BundleError(f"{path}: not an adegan bundle manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: bundle schema {manifest.get('schema_version')} is not supported (expects "
            f"{SCHEMA_VERSION}); re-export it with this adegan version"
        )
    missing = [f"{section}.{key}" for section, keys in REQUIRED_FIELDS.items() for key in keys
               if not isinstance(manifest.get(section), dict) or key not in manifest[section]]
    if missing:
        raise BundleError(f"{path}: the manifest lacks {', '.join(missing)}; re-export the bundle with adegan export")
    if verify and not manifest.get("files"):
        raise BundleError(f"{path}: the manifest lists no file hashes, so the model files cannot be checked; "
                          f"re-export the bundle, or pass --unverified-bundle if you trust these files")
    if verify:
        for name, entry in manifest.get("files", {}).items():
            file = bundle / name
            if not file.is_file():
                raise BundleError(f"{file}: listed in the manifest but missing; re-export the bundle")
            if sha256_file(file) != entry["sha256"]:
                raise BundleError(f"{file}: sha256 does not match the manifest (modified or corrupt); "
                                  f"refusing to load it; re-export the bundle")
    return manifest
