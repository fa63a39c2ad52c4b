"""The `adegan` command line: thin commands that validate flags, call one library function,
and print. Heavy imports happen inside the commands, so `adegan --help` is instant.

Exit codes: 0 success; 1 a failed job (bad data, corrupt checkpoint, ...); 2 bad usage;
3 a missing optional dependency; 130 interrupted (a resumable checkpoint was saved).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from adegan.errors import AdeganError, UsageError
from adegan.runtime.contract import BACKENDS, PRECISIONS, SCORE_MODES
from adegan.training.config import (BENCHMARKS, IMAGE_FEATURES, METHODS, MIXED_PRECISION, PATCH_FEATURES,
                                    PATTERN_INPUTS, PRESETS, WHOLE_IMAGE_DISTANCES)

INTERRUPTED = 130

app = typer.Typer(
    help="adegan: train on photos of good parts only, then flag anything that does not look like them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A choice type for typer made from the library's own tuple, so the two cannot drift apart."""
    return Enum(name, [(value, value) for value in values], type=str)


ScoreMode = _choices("ScoreMode", SCORE_MODES)
Method = _choices("Method", METHODS)
MixedPrecision = _choices("MixedPrecision", MIXED_PRECISION)
WholeImageDistance = _choices("WholeImageDistance", WHOLE_IMAGE_DISTANCES)
PatchFeatures = _choices("PatchFeatures", PATCH_FEATURES)
ImageFeatures = _choices("ImageFeatures", IMAGE_FEATURES)
PatternInput = _choices("PatternInput", PATTERN_INPUTS)
Preset = _choices("Preset", tuple(PRESETS))
Backend = _choices("Backend", BACKENDS)
Precision = _choices("Precision", PRECISIONS)

# Help panels of `adegan train`, so 30 options read as five short lists.
DATA, METHOD, GAN, SCORE, RUN = "Data", "Detector", "ADe-GAN and autoencoder training", "Score", "Options"


def _fraction(value: float | None) -> float | None:
    if value is not None and not 0.0 < value < 1.0:
        raise typer.BadParameter(f"must be between 0 and 1 (both excluded), got {value}")
    return value


def _positive(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a positive number, got {value}")
    return value


def _non_negative(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a number >= 0, got {value}")
    return value


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def _fail(error: AdeganError, resume_command: str | None = None) -> None:
    """One line for the error (and for an interrupted run, the exact command that continues it)."""
    if error.exit_code == INTERRUPTED:
        _interrupted(str(error), resume_command)
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(error.exit_code)


def _interrupted(what: str, command: str | None = None) -> None:
    typer.echo(f"interrupted (Ctrl-C): {what}", err=True)
    if command:
        typer.echo(f"continue with: {command}", err=True)
    raise typer.Exit(INTERRUPTED)


def _same_command(add: str | None = None, drop: tuple[str, ...] = ()) -> str:
    """The command line the user typed, with one flag added and some dropped, ready to paste."""
    arguments = [a for a in sys.argv[1:] if a not in drop]
    if add and add not in arguments:
        arguments.append(add)
    return shlex.join(["adegan", *arguments])


@app.command(epilog="""Examples:

  adegan train samples/fashion-mnist/train --out runs/demo

  adegan train line3/good --out runs/line3 --image-size 256

  adegan train fashion-mnist --anomaly-class 0 --out runs/f0 --method adegan --epochs 15

  adegan train fashion-mnist --anomaly-class 0 --out runs/f0 --resume --epochs 30
""")
def train(
    source: str = typer.Argument(..., help="A folder of normal images (recursive), or mnist / fashion-mnist / cifar10."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory for the checkpoint, samples and logs.",
                             rich_help_panel=RUN),
    image_size: Optional[int] = typer.Option(None, help="Model input size: 32, 64, 128 or 256 (default: the smallest "
                                             "that holds the images' long side, at most 256).", rich_help_panel=DATA),
    channels: Optional[int] = typer.Option(None, help="1 (gray) or 3 (colour) (default: from the data).",
                                           rich_help_panel=DATA),
    calibration_fraction: float = typer.Option(0.1, callback=_fraction, help="Share of the normals held out to set the threshold.",
                                               rich_help_panel=DATA),
    max_train_images: Optional[int] = typer.Option(None, min=1, help="Use at most this many training normals.",
                                                   rich_help_panel=DATA),
    anomaly_class: Optional[int] = typer.Option(None, help="Benchmarks: the class held out as the anomaly (0-9).",
                                                rich_help_panel=DATA),
    dataset_path: Optional[str] = typer.Option(None, help="Benchmarks: the dataset file or folder.",
                                               rich_help_panel=DATA),
    method: Method = typer.Option("memory-bank", metavar="NAME", help="memory-bank: distance to the nearest normals (whole image, or "
                                  "patches above 64 px); adegan: the paper's GAN; clustergan: the same networks trained as "
                                  "ClusterGAN trains (WGAN-GP, G frozen in L_recon); autoencoder: E and G trained on "
                                  "reconstruction only.", rich_help_panel=METHOD),
    patch_size: Optional[int] = typer.Option(None, min=2, help="Patch size in px (default: whole image up to 64 px, else 16).",
                                             rich_help_panel=METHOD),
    blur: Optional[float] = typer.Option(None, callback=_non_negative, help="Gaussian blur sigma in px (default: patch size / 32).",
                                         rich_help_panel=METHOD),
    neighbours: Optional[int] = typer.Option(None, min=1, help="Neighbours averaged (default: 5 whole image, 1 patches).",
                                             rich_help_panel=METHOD),
    bank_size: Optional[int] = typer.Option(None, min=1, help="Most feature rows kept, greedy coreset above (default: "
                                            "4,096, whole images or patches).", rich_help_panel=METHOD),
    distance: WholeImageDistance = typer.Option("mean-z", help="Whole images: cosine, l2, or both standardised on "
                                                "held-out normals and combined (max-z, mean-z).", rich_help_panel=METHOD),
    patch_features: PatchFeatures = typer.Option("pixels", help="Patches: pixels (mean removed), gradients "
                                                 "(brightness differences) or line (evidence of thin lines: cracks, "
                                                 "scratches).", rich_help_panel=METHOD),
    image_features: ImageFeatures = typer.Option("pixels+learned", help="Whole images: pixels (blurred), learned "
                                                 "(features of a small CNN trained on the normals to name "
                                                 "rotations) or pixels+learned (both, standardised).",
                                                 rich_help_panel=METHOD),
    learned_dims: int = typer.Option(64, min=1, help="Whole images: principal directions the learned features "
                                     "keep (3072 keeps all); fewer make each frame read less of the bank.",
                                     rich_help_panel=METHOD),
    epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs (default: 15; with --resume: the run's own, or a "
                                         "new total).", rich_help_panel=GAN),
    batch_size: int = typer.Option(64, min=1, help="Real images per iteration.", rich_help_panel=GAN),
    patterns: int = typer.Option(10, min=2, help="Number of patterns K the generator learns.", rich_help_panel=GAN),
    preset: Preset = typer.Option("default", help="Model size: default (width 64) or tiny (width 8).",
                                  rich_help_panel=GAN),
    width: Optional[int] = typer.Option(None, min=1, help="Base width of the networks (overrides the preset).",
                                        rich_help_panel=GAN),
    latent_dim: Optional[int] = typer.Option(None, min=1, help="Size of z_n (default: 30 gray, 64 colour).", rich_help_panel=GAN),
    noise_std: float = typer.Option(0.1, callback=_positive, help="Sigma of z_n ~ N(0, sigma^2) (ClusterGAN's 0.1).", rich_help_panel=GAN),
    pattern_input: PatternInput = typer.Option("softmax", help="What G gets from E in L_recon.", rich_help_panel=GAN),
    no_ip_loss: bool = typer.Option(False, "--no-ip-loss", help="Leave out L_ip (different-pattern interpolation).",
                                    rich_help_panel=GAN),
    noise_loss_weight: float = typer.Option(1.0, callback=_non_negative, help="Weight of MSE(z_n_hat, z_n) inside L_sl.", rich_help_panel=GAN),
    no_interpolation: bool = typer.Option(False, "--no-interpolation", help="Leave out same-pattern interpolation "
                                          "for G.", rich_help_panel=GAN),
    target_fpr: float = typer.Option(0.01, callback=_fraction, help="False-positive rate the threshold is set for.", rich_help_panel=SCORE),
    score_mode: Optional[ScoreMode] = typer.Option(None, help="z: the standardised distance (default for memory-bank); "
                                                   "cdf, two-sided: the paper's readings of Eq. 9 (default for the "
                                                   "GAN).", rich_help_panel=SCORE),
    seed: int = typer.Option(0, help="Seed for the split, initialization and sampling.", rich_help_panel=RUN),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, or cuda[:N].", rich_help_panel=RUN),
    mixed_precision: MixedPrecision = typer.Option("auto", help="Training passes under bf16 autocast: auto (on a "
                                                   "CUDA GPU only), bf16, or off (fp32 throughout).",
                                                   rich_help_panel=RUN),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint, with its "
                                "saved settings (only --epochs may change).", rich_help_panel=RUN),
    force: bool = typer.Option(False, "--force", help="Replace a run that already exists in --out.", rich_help_panel=RUN),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (logs, CI).", rich_help_panel=RUN),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout.", rich_help_panel=RUN),
):
    """Learn what good parts look like from a folder of their photos; set the threshold on held-out ones."""
    try:
        from adegan.training import require_torch

        require_torch()
        from adegan.training.config import MemoryBankConfig, ModelConfig, TrainConfig
        from adegan.training.data import source_channels, source_image_size
        from adegan.training.trainer import train as run_training

        train_config = TrainConfig(
            source=source, anomaly_class=anomaly_class, dataset_path=dataset_path, seed=seed, epochs=epochs or 15,
            batch_size=batch_size, calibration_fraction=calibration_fraction, target_fpr=target_fpr,
            use_ip_loss=not no_ip_loss, same_pattern_interpolation=not no_interpolation,
            pattern_input=pattern_input.value, score_mode=score_mode.value if score_mode else None,
            noise_loss_weight=noise_loss_weight,
            method=method.value, max_train_images=max_train_images, device=device,
            mixed_precision=mixed_precision.value,
        )
        bank_config = MemoryBankConfig(patch_size, blur, neighbours, bank_size, distance.value, patch_features.value,
                                       image_features.value, learned_dims)
        model_config = None
        if not resume:
            overrides = {"image_size": image_size or source_image_size(source), "n_patterns": patterns,
                         "latent_dim": latent_dim,
                         "noise_std": noise_std,
                         "channels": channels or source_channels(source)}
            if width is not None:
                overrides["width"] = width
            model_config = ModelConfig.preset(preset.value, **overrides)
        result = run_training(model_config, train_config, out, resume=resume, force=force, progress=not no_progress,
                              resume_epochs=epochs, bank_config=bank_config)
    except AdeganError as error:
        resumable = getattr(error, "resumable", True)  # a saved checkpoint (GAN) or nothing kept (memory bank)
        _fail(error, _same_command("--resume", drop=("--force",)) if resumable else
              _same_command("--force", drop=("--resume",)))
    if not result.main_process:  # under torchrun, rank 0 reports for all
        return
    summary = {"run_dir": str(result.run_dir), "epochs": result.epochs, "steps": result.steps,
               "images_per_second": round(result.images_per_second, 1),
               "calibration": result.calibration.to_dict()}
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    else:
        c = result.calibration
        if train_config.method == "memory-bank" and not resume:
            typer.echo(f"built the memory bank ({result.images_per_second:.0f} img/s); details in {result.run_dir}/metrics.jsonl")
        else:
            typer.echo(f"trained {result.epochs} epochs ({result.steps} steps, {result.images_per_second:.0f} img/s)")
        typer.echo(f"calibration: mu_e {c.mu_e:.5f}, sigma_e {c.sigma_e:.5f}, threshold {c.threshold:.4f} "
                   f"(target FPR {c.target_fpr:g}, {c.n_images} images)")
        from adegan.export.exporter import missing_export_libraries

        hints = [f"adegan export {_quote(result.run_dir)}"]
        if missing_export_libraries():  # make the export hint work first (a checkout installs with its constraints)
            hints.insert(0, "pip install -c constraints-cpu.txt -e '.[export,cpu]'" if Path("constraints-cpu.txt").is_file()
                         else "pip install 'adegan[export,cpu]'")
        if source in BENCHMARKS:
            hints.append(f"adegan evaluate {_quote(result.run_dir)}")
        _print_next(hints)
        if source not in BENCHMARKS:
            typer.echo("to measure it: `adegan evaluate` with the run and a folder of test photos (good/ and one "
                       "subfolder per defect type)")


@app.command(epilog="""Examples:

  adegan evaluate runs/f0

  adegan evaluate runs/demo samples/fashion-mnist/test --json

  adegan evaluate runs/f0 --report report.html

A test folder holds normal images in good/ (or normal/, ok/) and anomalies in any other subfolder.
""")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory made by `adegan train`."),
    test_source: Optional[str] = typer.Argument(None, help="A labelled test folder; default: the run's benchmark split."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write results (default RUN_DIR/evaluation)."),
    batch_size: int = typer.Option(256, min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, or cuda[:N]."),
    convert_channels: bool = typer.Option(False, "--convert-channels",
                                          help="Convert test images to the model's channels (gray/colour)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a self-contained HTML report here "
                                          "(ROC, histograms, learned patterns, worst cases)."),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
):
    """ROC AUC on labelled test images, overall and per anomaly folder, and the operating point at the threshold."""
    try:
        from adegan.training import require_torch

        require_torch()
        from adegan.training.evaluate import evaluate_run

        if report is not None and report.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"--report {report}: the report is an HTML file; give a name ending in .html")
        metrics = evaluate_run(run_dir, test_source, out, device, batch_size, convert_channels, report=report)
    except AdeganError as error:
        _fail(error)
    except KeyboardInterrupt:
        _interrupted("the evaluation did not finish; its files are written at the end, so none changed",
                     _same_command())
    if json_output:
        typer.echo(json.dumps(metrics, indent=2))
        return
    auc, at = metrics["auc"], metrics["at_threshold"]
    typer.echo(f"test set: {metrics['test_set']} ({metrics['n_normal']} normal, {metrics['n_anomalous']} anomalous)")
    typer.echo(f"AUC                 {auc['combined']:.3f}   (score mode {metrics['score_mode']}, method "
               f"{metrics['method']})")
    for part in ("reconstruction", "pattern"):  # only the parts this method has
        if part in auc:
            typer.echo(f"AUC {part:<15} {auc[part]:.3f}")
    typer.echo(f"at threshold {metrics['threshold']:.4f}: {at['true_positive_rate']:.1%} of anomalies flagged, "
               f"{at['false_positive_rate']:.1%} of normals flagged")
    kinds = metrics.get("per_kind", {})
    if len(kinds) > 1:  # one kind would only repeat the line above
        width = max(len(kind) for kind in kinds)
        for kind, entry in kinds.items():
            typer.echo(f"  {kind:<{width}}  AUC {entry['auc']:.3f}, {entry['flagged']:.1%} of {entry['images']} flagged")
    typer.echo(f"wrote {metrics['outputs']}/metrics.json, scores.csv, roc.png, score_histogram.png")
    if "report" in metrics:
        typer.echo(f"wrote {metrics['report']}")


@app.command(epilog="""Examples:

  adegan export runs/quickstart --fp16

  adegan export runs/f0 --out bundles/f0 --fp16 --engine --max-batch 16

  adegan export runs/f0 --out bundles/f0 --triton model_repository --force
""")
def export(
    run_dir: Path = typer.Argument(..., help="A run directory made by `adegan train`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle folder (default RUN_DIR/bundle)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write model.fp16.onnx (fp32 inputs/outputs)."),
    engine: bool = typer.Option(False, "--engine", help="Also build a TensorRT engine (on a machine with TensorRT and a GPU)."),
    max_batch: int = typer.Option(32, min=1, help="Largest batch of the TensorRT profile and the Triton config."),
    opset: int = typer.Option(17, min=7, max=21, help="ONNX opset (17 is what TensorRT 8.5 / JetPack 5.1 reads)."),
    triton: Optional[Path] = typer.Option(None, "--triton", help="Also write a Triton model repository here."),
    force: bool = typer.Option(False, "--force", help="Replace a bundle already in --out."),
    json_output: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
):
    """Export a trained run to ONNX (fp32, fp16) and TensorRT, with a manifest and parity checks."""
    try:
        from adegan.training import require_torch

        require_torch()
        from adegan.export.exporter import ExportOptions, export_run

        result = export_run(run_dir, ExportOptions(out, fp16, engine, max_batch, opset, triton, force))
    except AdeganError as error:
        _fail(error)
    except KeyboardInterrupt:
        _interrupted("no bundle was written (export builds it aside and moves it into place at the end)",
                     _same_command())
    if json_output:
        typer.echo(json.dumps(result.manifest, indent=2))
        return
    _print_parity(result.manifest["parity"])
    if result.engine_note:
        typer.echo(result.engine_note, err=True)
    typer.echo(f"bundle {result.bundle}:")
    for name, size in sorted(result.files.items()):
        typer.echo(f"  {name:<18} {size / 1e6:8.2f} MB")
    typer.echo(f"  {'adegan.json':<18} (manifest: threshold {result.manifest['score']['threshold']:.4f})")
    if result.triton_dir:
        typer.echo(f"triton model repository: {result.triton_dir}")
    bundle, source = _quote(result.bundle), result.manifest["training"]["source"]
    hints = [f"adegan info {bundle}"]
    if source not in BENCHMARKS and Path(source).is_dir():  # score the training photos: a first look at the scores
        hints.append(f"adegan score {_quote(source)} --model {bundle} --out {_quote(Path(run_dir) / 'scores.csv')}")
    hints.append(f"adegan watch --camera 0 --model {bundle}")
    _print_next(hints)


def _quote(path) -> str:
    return shlex.quote(str(path))


def _print_next(commands: list[str]) -> None:
    """Next steps, one command per line, each runnable exactly as printed."""
    typer.echo("next:")
    for command in commands:
        typer.echo(f"  {command}")


def _print_parity(parity: dict) -> None:
    columns = ("recon_error", "pattern_probs", "residual", "score")
    typer.echo(f"{'parity (max abs diff)':<22}" + "".join(f"{c:>15}" for c in columns) + f"{'verdicts changed':>18}")
    for name, row in parity.items():
        cells = "".join(f"{row[f'max_abs_{c}']:>15.2e}" for c in columns)
        typer.echo(f"{name:<22}{cells}{row['verdict_changes']:>12} / {row['images']}")


@app.command(epilog="""Examples:

  adegan score line1/images --model bundle --out results.csv

  adegan score 'shots/**/*.png' --model bundle --out results.jsonl --overlays flagged/

  adegan score shots --model bundle --out results.csv --resume --fail-on-anomaly

Exit codes: 0 done; 4 anomalies found (with --fail-on-anomaly); 5 some images could not be read
(they get an error row); 1 failed; 2 bad usage; 3 missing dependency.
""")
def score(
    paths: list[str] = typer.Argument(..., help="Image files, folders (recursive) or glob patterns."),
    model: Path = typer.Option(..., "--model", "-m", help="A bundle folder written by `adegan export`."),
    out: Path = typer.Option(Path("results.csv"), "--out", "-o", help="results.csv or results.jsonl."),
    batch_size: int = typer.Option(32, min=1, help="Images per inference call (on a CPU, the --workers take "
                                   "whole batches in turn; in a short job, or with --overlays, a batch of 16 or "
                                   "more is shared among them)."),
    backend: Backend = typer.Option(Backend.auto, help="auto: TensorRT engine when usable, else ONNX Runtime."),
    precision: Precision = typer.Option(Precision.fp32, help="ONNX Runtime: model.onnx or model.fp16.onnx."),
    threshold: Optional[float] = typer.Option(None, callback=_finite, help="Override the bundle's calibrated threshold."),
    overlays: Optional[Path] = typer.Option(None, help="Write a heat-map overlay of each anomaly here."),
    resume: bool = typer.Option(False, "--resume", help="Append to --out, skipping images already in it."),
    fail_on_anomaly: bool = typer.Option(False, "--fail-on-anomaly", help="Exit with code 4 if any image is anomalous."),
    workers: Optional[int] = typer.Option(None, min=0, help="Scoring threads, each decoding and scoring its own "
                                          "batches with a share of the CPUs; 0 or 1: one thread [default: one per "
                                          "usable CPU]."),
    unverified_bundle: bool = typer.Option(False, "--unverified-bundle", help="Load model files the manifest does "
                                           "not hash (an old or hand-made bundle) without refusing."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (logs, CI)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Batch-score images with a bundle (no torch): one row per image, written as it goes."""
    try:
        from adegan.runtime.file_scoring import default_workers, expand_inputs, score_files
        from adegan.runtime.model import BundleModel

        files = expand_inputs(paths)
        workers = default_workers() if workers is None else workers
        with BundleModel(model, backend.value, precision.value, threshold, verify=not unverified_bundle,
                         parallel_calls=max(1, workers)) as bundle_model:
            summary = score_files(bundle_model, files, out, batch_size, resume, overlays, workers, not no_progress)
    except AdeganError as error:
        _fail(error)
    except KeyboardInterrupt:
        _interrupted(f"the rows of every finished batch are in {out}", _same_command("--resume"))
    if json_output:
        typer.echo(json.dumps({**summary.to_dict(), "out": str(out), "threshold": bundle_model.threshold}))
    else:
        typer.echo(f"scored {summary.images} image(s) with {summary.backend}: {summary.anomalies} anomalous, "
                   f"{summary.errors} unreadable, {summary.images_per_second:.0f} img/s"
                   + (f" ({summary.skipped} already done)" if summary.skipped else ""))
        typer.echo(f"threshold {bundle_model.threshold:.4f}; rows in {out}" + (f"; overlays in {overlays}" if overlays else ""))
    if fail_on_anomaly and summary.anomalies:
        raise typer.Exit(4)
    if summary.errors:
        raise typer.Exit(5)


@app.command(epilog="""Examples:

  adegan watch --camera 0 --model bundle --show

  adegan watch --url rtsp://camera.local/stream --model bundle --roi 100,50,320,240 --save-anomalies flagged/

  adegan watch --gst "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1" --model bundle

  adegan watch --folder incoming/ --model bundle --jsonl watch.jsonl

  adegan watch --video line.mp4 --model bundle --max-frames 500 --json

  adegan watch --video line.mp4 --loop --duration 600 --model bundle --jsonl soak.jsonl
""")
def watch(
    model: Path = typer.Option(..., "--model", "-m", help="A bundle folder written by `adegan export`."),
    camera: Optional[int] = typer.Option(None, min=0, help="Camera index (V4L2 / USB)."),
    video: Optional[str] = typer.Option(None, help="A video file (every frame, in order)."),
    url: Optional[str] = typer.Option(None, help="An rtsp:// or http:// stream."),
    folder: Optional[str] = typer.Option(None, help="Score image files as they arrive in this folder."),
    gst: Optional[str] = typer.Option(None, help="A GStreamer pipeline ending in appsink (needs OpenCV with GStreamer)."),
    roi: Optional[str] = typer.Option(None, help="Score only this region: x,y,w,h in pixels."),
    show: bool = typer.Option(False, "--show", help="Show the overlay in a window (needs a display and GUI OpenCV)."),
    save_anomalies: Optional[Path] = typer.Option(None, help="Save the overlay of each anomalous frame here."),
    jsonl: Optional[Path] = typer.Option(None, help="Append one JSON line per frame here."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many frames."),
    duration: Optional[float] = typer.Option(None, callback=_positive, help="Stop after this many seconds."),
    loop: bool = typer.Option(False, "--loop", help="Replay --video from the start when it ends (demos, soak tests)."),
    backend: Backend = typer.Option(Backend.auto, help="auto: TensorRT engine when usable, else ONNX Runtime."),
    precision: Precision = typer.Option(Precision.fp32, help="ONNX Runtime: model.onnx or model.fp16.onnx."),
    threshold: Optional[float] = typer.Option(None, callback=_finite, help="Override the bundle's calibrated threshold."),
    unverified_bundle: bool = typer.Option(False, "--unverified-bundle", help="Load model files the manifest does "
                                           "not hash (an old or hand-made bundle) without refusing."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Watch a camera, stream, video or folder: score each frame live, flag anomalies."""
    try:
        from adegan.runtime.model import BundleModel
        from adegan.runtime.sources import open_source
        from adegan.runtime.watch import check_display, parse_roi, watch as run_watch

        region = parse_roi(roi)
        if show:
            check_display()  # before a camera is opened
        bundle_model = BundleModel(model, backend.value, precision.value, threshold, verify=not unverified_bundle)
        source = open_source(camera, video, url, folder, gst, loop=loop)
        with bundle_model:  # the backend is released (ORT session, TensorRT buffers) however the watch ends
            summary = run_watch(bundle_model, source, region, show, save_anomalies, jsonl, max_frames, duration=duration)
    except AdeganError as error:
        _fail(error)
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{summary['frames']} frame(s), {summary['anomalies']} anomalous, {summary['fps']:.1f} FPS, "
                   f"latency p50 {summary['latency_ms_p50']:.2f} ms / p95 {summary['latency_ms_p95']:.2f} ms / "
                   f"p99 {summary['latency_ms_p99']:.2f} ms")


@app.command(epilog="""Examples:

  adegan calibrate bundle site_good_images/

  adegan calibrate bundle 'good/*.png' --target-fpr 0.005
""")
def calibrate(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `adegan export`."),
    good: list[str] = typer.Argument(..., help="Good images from this site: folders, files or globs."),
    target_fpr: Optional[float] = typer.Option(None, callback=_fraction, help="False-positive rate for the threshold (default: the bundle's)."),
    backend: Backend = typer.Option(Backend.auto, help="Backend used to score the good images."),
    convert_channels: bool = typer.Option(False, "--convert-channels", help="Convert colour images for a gray "
                                          "model (or gray for a colour one) instead of refusing them."),
    unverified_bundle: bool = typer.Option(False, "--unverified-bundle", help="Load model files the manifest does "
                                           "not hash (an old or hand-made bundle) without refusing."),
):
    """Recalibrate mu_e, sigma_e and the threshold on site, without torch; keeps every earlier manifest."""
    try:
        from adegan.runtime.calibrate import HISTORY_FOLDER, PREVIOUS_NAME, calibrate_bundle

        old, new = calibrate_bundle(bundle, good, target_fpr, backend=backend.value, verify=not unverified_bundle,
                                    convert=convert_channels)
    except AdeganError as error:
        _fail(error)
    except KeyboardInterrupt:
        _interrupted(f"the manifest in {bundle} is unchanged", _same_command())
    typer.echo(f"calibrated on {new['n_images']} good images (target FPR {new['target_fpr']:g})")
    for key in ("mu_e", "sigma_e", "threshold"):
        typer.echo(f"  {key:<10} {old[key]:.6f} -> {new[key]:.6f}")
    typer.echo(f"the manifest it replaced is kept in {Path(bundle) / HISTORY_FOLDER}/ (every calibration, "
               f"timestamped) and as {Path(bundle) / PREVIOUS_NAME}")


@app.command(epilog="""Examples:

  adegan info runs/quickstart/bundle

  adegan info runs/quickstart/bundle --json
""")
def info(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `adegan export`."),
    json_output: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON."),
):
    """What a bundle is: input, calibration, threshold, versions, files (hashes verified)."""
    try:
        from adegan.runtime.bundle import load_manifest

        manifest = load_manifest(bundle)
    except AdeganError as error:
        _fail(error)
    if json_output:
        typer.echo(json.dumps(manifest, indent=2))
        return
    spec, score_section = manifest["input"], manifest["score"]
    typer.echo(f"bundle {bundle}: {manifest['name']} (schema {manifest['schema_version']}, created {manifest['created']})")
    method = manifest.get("method", "adegan")
    detector = "memory bank" if method == "memory-bank" else f"{method}, {manifest['n_patterns']} patterns"
    typer.echo(f"input   {spec['channels']}x{spec['image_size']}x{spec['image_size']} {spec['colour_order']}, "
               f"float32 in [0, 1]; detector: {detector}")
    typer.echo(f"score   mode {score_section['score_mode']}, mu_e {score_section['mu_e']:.5f}, "
               f"sigma_e {score_section['sigma_e']:.5f}, threshold {score_section['threshold']:.4f} "
               f"(target FPR {score_section['target_fpr']:g}, {score_section['n_images']} images"
               + (f", {score_section['source']}" if "source" in score_section else "") + ")")
    training = manifest["training"]
    typer.echo(f"trained on {training['source']} for {training['epochs']} epochs (seed {training['seed']})")
    typer.echo("versions " + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items() if v))
    for name, entry in manifest["files"].items():
        typer.echo(f"  {name:<18} {entry['bytes'] / 1e6:8.2f} MB  sha256 {entry['sha256'][:16]}… ok")
    engine = manifest.get("tensorrt") or {}
    if engine and not engine.get("built"):
        typer.echo(f"no TensorRT engine; build one on the device: {engine.get('trtexec')}")


@app.command(epilog="""Examples:

  adegan bench runs/quickstart/bundle

  adegan bench runs/quickstart/bundle -b 1 -b 64 --seconds 5 --json
""")
def bench(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `adegan export`."),
    batch_sizes: list[int] = typer.Option([1, 8, 32], "--batch-size", "-b", min=1, help="Batch sizes (repeat the option)."),
    seconds: float = typer.Option(2.0, callback=_positive, help="Seconds per measurement."),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
):
    """Throughput and latency of a bundle per backend, precision and batch size."""
    try:
        from adegan.runtime.bench import benchmark

        rows = benchmark(bundle, batch_sizes, seconds)
    except AdeganError as error:
        _fail(error)
    except KeyboardInterrupt:
        _interrupted("no measurement finished", _same_command())
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'backend':<52}{'prec':>6}{'batch':>7}{'img/s':>10}{'p50 ms':>9}{'p95 ms':>9}")
    for row in rows:
        if "error" in row:
            typer.echo(f"{row['backend']:<52}{row['precision']:>6}  unavailable: {row['error']}")
            continue
        typer.echo(f"{row['backend']:<52}{row['precision']:>6}{row['batch']:>7}{row['images_per_second']:>10.0f}"
                   f"{row['latency_ms_p50']:>9.2f}{row['latency_ms_p95']:>9.2f}")


def main() -> None:  # pragma: no cover - entry point for `python -m adegan`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
