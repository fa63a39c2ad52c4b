"""Image-level benchmark on real defect photos: your own folder, or a KolektorSDD-style npz.

Data:
  --folder DIR   DIR/good/ holds normal images, every other subfolder of DIR one defect type
                 (DIR/crack/, DIR/scratch/, ...), as `adegan evaluate` reads test folders.
  --npz FILE     arrays x (N, H, W[, 3]) uint8, y (0 good / 1 defect), and optionally group (the
                 physical part each image shows), dup_of (>= 0 marks a duplicate, dropped) and
                 class_names; KolektorSDD ships this way (kolektorsdd_256.npz).

Protocol: k-fold cross-validation (default 5 folds) per seed. The folds split the parts when
`group` exists (every image of a part lands in one fold, so test parts are never seen in
training), else the images. Each fold trains on the good images of the other folds and tests on
its own good and defect images; the result is the mean of the per-fold image AUCs (and the AUC
per defect type). Every method sees the same folds, in the same run:

  product       the library's default detector, built exactly as `adegan train` builds it
                (image size chosen from the data, aspect ratio kept), scored in eval mode
  baselines     PCA reconstruction (global and local max), pixel k-NN (L2, cosine; k = 1, 5)
  --cli         also the real command-line path per fold: adegan train -> export -> score on
                PNG folders written to a temporary directory, AUC from score's CSV

--validate replaces the test images by a validation set made from training normals only, so a
recipe can be chosen without looking at the real defects: each fold's training normals are split
80/20, the detector is built on the 80 %, and the 20 % are scored as they are and with one
synthetic defect each (a thin dark or bright scratch, a blob of changed brightness, or a patch
cut from another normal image and pasted elsewhere; 0.2-2 % of the image), or with --defects faint
a faint thin curved crack or soft spot, darker or brighter by 1-3x the image's own texture
contrast (real cracks hide in the texture; the mixed defects are far stronger). --bank-option
KEY=VALUE changes a MemoryBankConfig field of the product for such probes.

One JSON per seed under --results (resumable: a finished seed is skipped).

Examples:
  python benchmarks/defect_benchmark.py --npz data/kolektorsdd_256.npz --name kolektorsdd --seeds 0 1 2
  python benchmarks/defect_benchmark.py --folder my_line_photos --name line3 --folds 4 --cli
  python benchmarks/defect_benchmark.py --npz data/kolektorsdd_256.npz --name val-p8 --validate --bank-option patch_size=8
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from baselines import baseline_scores
from benchmark_results import save_results

RESULTS_ROOT = Path("benchmarks/results/defects")


def load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        x, y = archive["x"], archive["y"].astype(np.int64)
        keep = archive["dup_of"] < 0 if "dup_of" in archive else np.ones(len(y), bool)
        group = archive["group"] if "group" in archive else None
        names = [str(n) for n in archive["class_names"]] if "class_names" in archive else ["good", "defect"]
    images = [image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2) for image in x[keep]]
    return {"images": images, "labels": y[keep], "kinds": [names[v] for v in y[keep]],
            "groups": None if group is None else group[keep], "dropped_duplicates": int((~keep).sum())}


def load_folder(folder: Path) -> dict:
    from adegan.runtime.images import list_images, read_image
    from adegan.training.data import NORMAL_FOLDER_NAMES

    images, labels, kinds = [], [], []
    for path in list_images(folder):
        kind = path.relative_to(folder).parts[0]
        images.append(read_image(path))
        labels.append(0 if kind.lower() in NORMAL_FOLDER_NAMES else 1)
        kinds.append(kind)
    return {"images": images, "labels": np.array(labels), "kinds": kinds, "groups": None, "dropped_duplicates": 0}


def make_folds(data: dict, folds: int, seed: int) -> list[np.ndarray]:
    """Test index sets: whole groups per fold when groups exist, else images (stratified)."""
    rng = np.random.default_rng(seed)
    if data["groups"] is not None:
        groups = rng.permutation(np.unique(data["groups"]))
        return [np.flatnonzero(np.isin(data["groups"], groups[f::folds])) for f in range(folds)]
    out = [[] for _ in range(folds)]
    for label in (0, 1):
        index = rng.permutation(np.flatnonzero(data["labels"] == label))
        for f in range(folds):
            out[f].extend(index[f::folds])
    return [np.sort(np.array(part)) for part in out]


def model_images(images: list, size: int, channels: int) -> np.ndarray:
    from adegan.runtime.images import to_model_uint8

    return np.stack([to_model_uint8(image, size, channels) for image in images])


def synthetic_defect(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One model-size uint8 (C, S, S) image with one synthetic defect covering about 0.2-2 % of
    its content: a scratch, a blob, or a pasted patch of another normal image."""
    import cv2

    out = np.ascontiguousarray(image.transpose(1, 2, 0)).copy()
    content = np.argwhere(out.max(axis=2) > 0)  # stay on the part, not on letterbox padding
    (top, left), (bottom, right) = content.min(0), content.max(0)
    area = (bottom - top + 1) * (right - left + 1)
    side = int(np.sqrt(area * rng.uniform(0.002, 0.02)))
    y, x = int(rng.integers(top, max(top + 1, bottom - side))), int(rng.integers(left, max(left + 1, right - side)))
    kind = rng.choice(["scratch", "blob", "paste"])
    if kind == "scratch":
        length = int(side * rng.uniform(2, 4))
        angle = rng.uniform(0, np.pi)
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        shade = int(rng.choice([rng.integers(0, 40), rng.integers(215, 256)]))
        cv2.line(out, (x, y), end, (shade,) * out.shape[2], int(rng.integers(1, 3)))
    elif kind == "blob":
        mask = np.zeros(out.shape[:2], np.uint8)
        cv2.ellipse(mask, (x + side // 2, y + side // 2), (max(1, side // 2), max(1, side // 4)),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        shift = rng.choice([-1, 1]) * rng.uniform(30, 70)
        out = np.where(mask[:, :, None] > 0, np.clip(out.astype(np.float32) + shift, 0, 255), out).astype(np.uint8)
    else:
        source = np.ascontiguousarray(donor.transpose(1, 2, 0))
        sy, sx = int(rng.integers(top, max(top + 1, bottom - side))), int(rng.integers(left, max(left + 1, right - side)))
        out[y:y + side, x:x + side] = np.rot90(source[sy:sy + side, sx:sx + side], int(rng.integers(1, 4)))[:side, :side] \
            if side > 0 else out[y:y + side, x:x + side]
    return out.reshape(out.shape[0], out.shape[1], -1).transpose(2, 0, 1)


def faint_defect(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One model-size uint8 (C, S, S) image with one *faint* synthetic defect: a thin curved crack
    (1-2 px, a quadratic curve 10-40 % of the part's long side) or a soft spot (0.05-0.5 % of the
    part), darker or brighter by 1-3 times the image's own texture contrast (the standard
    deviation of the image minus its blur), so that it hides in the texture as real flaws do.
    `donor` is unused (same signature as synthetic_defect)."""
    import cv2

    out = np.ascontiguousarray(image.transpose(1, 2, 0)).astype(np.float32)
    gray = out.mean(axis=2)
    content = np.argwhere(gray > 0)
    (top, left), (bottom, right) = content.min(0), content.max(0)
    inside = gray[top:bottom + 1, left:right + 1]
    texture = float((inside - cv2.GaussianBlur(inside, (0, 0), 2.0)).std())
    delta = float(rng.choice([-1, 1]) * rng.uniform(1, 3) * max(texture, 2.0))
    mask = np.zeros(gray.shape, np.float32)
    scale = 8  # draw at 8x sub-pixel precision, anti-aliased
    if rng.random() < 0.5:
        length = rng.uniform(0.1, 0.4) * max(bottom - top, right - left)
        angle = rng.uniform(0, np.pi)
        start = np.array([rng.uniform(left, right), rng.uniform(top, bottom)])
        end = start + length * np.array([np.cos(angle), np.sin(angle)])
        bend = (start + end) / 2 + rng.normal(0, 0.15 * length, 2)
        t = np.linspace(0, 1, 64)[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t ** 2 * end
        cv2.polylines(mask, [np.round(curve * scale).astype(np.int32)], False, 1.0, int(rng.integers(1, 3)),
                      cv2.LINE_AA, shift=3)
    else:
        area = rng.uniform(0.0005, 0.005) * (bottom - top + 1) * (right - left + 1)
        axes = np.sqrt(area / np.pi) * np.array([1.0, rng.uniform(0.4, 1.0)])
        centre = (int(rng.uniform(left, right) * scale), int(rng.uniform(top, bottom) * scale))
        cv2.ellipse(mask, centre, tuple(int(max(1, a) * scale) for a in axes), float(rng.uniform(0, 180)), 0, 360,
                    1.0, -1, cv2.LINE_AA, shift=3)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
    mask *= gray > 0  # never paint the letterbox padding
    out = np.clip(out + delta * mask[:, :, None], 0, 255).astype(np.uint8)
    return out.reshape(out.shape[0], out.shape[1], -1).transpose(2, 0, 1)


DEFECT_MAKERS = {"mixed": synthetic_defect, "faint": faint_defect}


def validation_split(images: np.ndarray, train_index: np.ndarray, seed: int, defects: str = "mixed"):
    """(bank images, validation images, labels, kinds) from training normals only; `defects`
    names the synthetic defect maker (DEFECT_MAKERS)."""
    rng = np.random.default_rng(seed + 1000)
    order = rng.permutation(train_index)
    held = order[:max(2, len(order) // 5)]
    bank = order[len(held):]
    defects = [DEFECT_MAKERS[defects](images[i], images[rng.choice(bank)], rng) for i in held]
    validation = np.concatenate([images[held], np.stack(defects)])
    labels = np.concatenate([np.zeros(len(held), np.int64), np.ones(len(held), np.int64)])
    return images[bank], validation, labels, ["good"] * len(held) + ["synthetic"] * len(held)


def product_scores(train: np.ndarray, test: np.ndarray, image_size: int, channels: int, seed: int,
                   bank_options: dict | None = None) -> np.ndarray:
    """The default detector of `adegan train`, built on the training normals (all of them for
    patches; for whole images less the 10 % its distances are standardised on), test distances."""
    from adegan.training.config import MemoryBankConfig, ModelConfig
    from adegan.training.memory_bank import build_detector
    from adegan.training.inference import detector_outputs

    model_config, bank_config = ModelConfig(image_size=image_size, channels=channels), MemoryBankConfig(**(bank_options or {}))
    held_out = None
    if bank_config.standardises_views(image_size):
        # Whole-image distances are standardised on normals outside the bank: hold out 10 %, as adegan train does.
        order = np.random.default_rng(seed).permutation(len(train))
        held_out, train = train[order[:max(2, round(0.1 * len(train)))]], train[order[max(2, round(0.1 * len(train))):]]
    detector, _ = build_detector(model_config, bank_config, train, "cpu", seed, held_out_uint8=held_out)
    distance, _ = detector_outputs(detector, test, "cpu")
    return distance


def cli_scores(data: dict, train_index: np.ndarray, test_index: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """adegan train -> export -> score through the command line, on PNG folders; scores in test order."""
    import cv2

    adegan = [sys.executable, "-m", "adegan"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for where, index in (("train/good", train_index), ("test", test_index)):
            for i in index:
                folder = root / where / (data["kinds"][i] if where == "test" else "")
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{i:05d}.png"), data["images"][i])
        timings = {}
        for name, command in (
            ("train", [*adegan, "train", str(root / "train"), "--out", str(root / "run"), "--seed", str(seed),
                       "--no-progress"]),
            ("export", [*adegan, "export", str(root / "run")]),
            ("score", [*adegan, "score", str(root / "test"), "--model", str(root / "run" / "bundle"),
                       "--out", str(root / "scores.csv"), "--no-progress"]),
        ):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, text=True)
            timings[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        with open(root / "scores.csv", newline="", encoding="utf-8") as file:
            rows = {int(Path(row["path"]).stem): row for row in csv.DictReader(file)}
    flagged = sum(rows[i]["verdict"] == "anomaly" for i in test_index if data["labels"][i] == 1)
    by_index = {i: float(row["score"]) for i, row in rows.items()}
    return np.array([by_index[i] for i in test_index]), {**timings, "defects_flagged": int(flagged)}


def aucs_for(labels: np.ndarray, kinds: list[str], scores: np.ndarray) -> dict:
    from adegan.training.metrics import roc_auc

    result = {"auc": round(float(roc_auc(labels, scores)), 4)}
    kinds = np.array(kinds)
    for kind in sorted(set(kinds[labels == 1])):
        keep = (labels == 0) | (kinds == kind)
        result[f"auc_{kind}"] = round(float(roc_auc(labels[keep], scores[keep])), 4)
    return result


def run_seed(data: dict, args, seed: int) -> dict:
    from adegan.training.data import image_size_for

    channels = 1 if all(np.array_equal(im[..., 0], im[..., 1]) for im in data["images"][:16]) else 3
    image_size = args.image_size or image_size_for(float(np.median([max(im.shape[:2]) for im in data["images"]])))
    images = model_images(data["images"], image_size, channels)
    folds, per_method = make_folds(data, args.folds, seed), {}
    for fold, test_index in enumerate(folds):
        train_index = np.setdiff1d(np.flatnonzero(data["labels"] == 0), test_index)
        labels, kinds = data["labels"][test_index], [data["kinds"][i] for i in test_index]
        train_images, test_images = images[train_index], images[test_index]
        if args.validate:
            train_images, test_images, labels, kinds = validation_split(images, train_index, seed * 100 + fold,
                                                                        args.defects)
        if labels.min() == labels.max():
            print(f"seed {seed} fold {fold}: only one class in test, skipped", flush=True)
            continue
        start = time.perf_counter()
        scores = {"product": product_scores(train_images, test_images, image_size, channels, seed, args.bank_options)}
        seconds = {"product": time.perf_counter() - start}
        start = time.perf_counter()
        scores.update(baseline_scores(train_images, test_images))
        seconds["baselines"] = time.perf_counter() - start
        extra = {}
        if args.cli and not args.validate:
            scores["cli"], extra = cli_scores(data, train_index, test_index, seed)
        for name, values in scores.items():
            per_method.setdefault(name, []).append({"fold": fold, **aucs_for(labels, kinds, values)})
        per_method.setdefault("_folds", []).append({"fold": fold, "n_train": len(train_index), "n_test": len(test_index),
                                                    "n_defect": int(labels.sum()), **extra,
                                                    **{f"{k}_seconds": round(v, 1) for k, v in seconds.items()}})
        print(json.dumps({"seed": seed, "fold": fold, **{k: v[-1]["auc"] for k, v in per_method.items()
                                                         if not k.startswith("_")}}), flush=True)
    summary = {name: {"mean_auc": round(float(np.mean([r["auc"] for r in rows])), 4)}
               for name, rows in per_method.items() if not name.startswith("_")}
    return {"seed": seed, "validation": bool(args.validate), "defects": args.defects if args.validate else "real",
            "bank_options": args.bank_options,
            "image_size": image_size, "channels": channels, "folds": args.folds,
            "grouped": data["groups"] is not None, "dropped_duplicates": data["dropped_duplicates"],
            "summary": summary, "per_fold": per_method}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path)
    source.add_argument("--npz", type=Path)
    parser.add_argument("--name", required=True, help="results go to --results/NAME/seedS.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--image-size", type=int, help="default: chosen from the data as adegan train does")
    parser.add_argument("--cli", action="store_true", help="also run adegan train/export/score per fold")
    parser.add_argument("--validate", action="store_true", help="score synthetic defects on held-out training "
                        "normals instead of the test images (for choosing a recipe)")
    parser.add_argument("--defects", choices=sorted(DEFECT_MAKERS), default="mixed",
                        help="with --validate: mixed (scratch, blob, pasted patch) or faint (cracks and spots at "
                        "1-3x the image's texture contrast)")
    parser.add_argument("--bank-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a MemoryBankConfig field for the product, value as JSON (e.g. patch_size=8)")
    parser.add_argument("--results", type=Path, default=RESULTS_ROOT)
    args = parser.parse_args()
    args.bank_options = {key: json.loads(value) for key, _, value in (o.partition("=") for o in args.bank_option)}
    data = load_npz(args.npz) if args.npz else load_folder(args.folder)
    for seed in args.seeds:
        path = args.results / args.name / f"seed{seed}.json"
        if path.exists():
            print(f"skip {path} (exists)", flush=True)
            continue
        row = run_seed(data, args, seed)
        save_results(path, args, row)
        print(json.dumps({"seed": seed, **{k: v["mean_auc"] for k, v in row["summary"].items()}}), flush=True)


if __name__ == "__main__":
    main()
