"""Hostile inputs for score and the bundle loader: each must give an error row (the job goes on)
or one clear line, never a traceback, a hang or mixed output. Hostile files are made at test time."""

import csv
import json
import os
import struct
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from adegan.cli import app  # noqa: E402
from adegan.runtime.bundle import BundleError  # noqa: E402
from adegan.runtime.images import ImageDecodeError, decode_image, image_header, list_image_names  # noqa: E402
from adegan.runtime.model import BundleModel  # noqa: E402

runner = CliRunner()


def png_header_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def folder(tmp_path):
    """Three good images, a 30000 x 30000 PNG bomb, and a name that is not valid UTF-8."""
    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):
        cv2.imwrite(str(root / f"ok{i}.png"), np.full((32, 32), 40 * i, np.uint8))
    (root / "bomb.png").write_bytes(png_header_bomb(30000, 30000))
    ok, encoded = cv2.imencode(".png", np.full((32, 32), 90, np.uint8))
    with open(os.fsencode(root) + b"/caf\xe9.png", "wb") as file:  # latin-1, not UTF-8
        file.write(encoded.tobytes())
    return root


def score(*args):
    return runner.invoke(app, ["score", *[str(a) for a in args], "--no-progress"])


def test_a_pixel_bomb_and_a_non_utf8_name_become_rows_and_the_job_goes_on(bundle, folder, tmp_path):
    out = tmp_path / "results.csv"
    result = score(folder, "--model", bundle, "--out", out)
    assert result.exit_code == 5, result.output  # finished, with one unreadable image
    with open(out, encoding="utf-8", errors="surrogateescape", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 5
    bomb = next(r for r in rows if r["path"].endswith("bomb.png"))
    assert bomb["verdict"] == "error" and "more than the limit" in bomb["error"]
    latin = next(r for r in rows if "caf" in r["path"])
    assert os.fsencode(latin["path"]).endswith(b"caf\xe9.png") and latin["verdict"] != "error"  # lossless
    again = score(folder, "--model", bundle, "--out", out, "--resume")  # resume matches the odd name too
    assert again.exit_code == 0 and "scored 0 image(s)" in again.output, again.output

    jsonl = tmp_path / "results.jsonl"
    assert score(folder, "--model", bundle, "--out", jsonl).exit_code == 5
    names = [json.loads(line)["path"] for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert any(os.fsencode(name).endswith(b"caf\xe9.png") for name in names)


def test_the_pixel_limit_is_documented_and_can_be_raised(monkeypatch):
    bomb = png_header_bomb(20000, 10000)
    with pytest.raises(ImageDecodeError, match="ADEGAN_MAX_IMAGE_PIXELS"):
        decode_image(bomb, "big.png")
    monkeypatch.setenv("ADEGAN_MAX_IMAGE_PIXELS", str(300_000_000))
    with pytest.raises(ImageDecodeError, match="not a readable image"):  # past our check; the data is short
        decode_image(bomb, "big.png")


def tiff_header_bomb(width: int, height: int, order: str = "<") -> bytes:
    """A tiny TIFF whose first directory declares width x height pixels (LONG values)."""
    magic = b"II*\0" if order == "<" else b"MM\0*"
    entries = [struct.pack(order + "HHII", 256, 4, 1, width), struct.pack(order + "HHII", 257, 4, 1, height)]
    return magic + struct.pack(order + "I", 8) + struct.pack(order + "H", 2) + b"".join(entries) + b"\0" * 4


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".tif"])
def test_image_sizes_are_read_from_the_headers_of_every_listed_format(extension):
    encoded = cv2.imencode(extension, np.zeros((37, 91, 3), np.uint8))[1]
    assert image_header(encoded)[:2] == (91, 37)


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiff_bomb_is_refused_before_decoding(order):
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        decode_image(tiff_header_bomb(30000, 30000, order), "bomb.tif")


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_is_found(tmp_path, monkeypatch, capsys):
    for part in ("open", "locked"):
        (tmp_path / part).mkdir()
        cv2.imwrite(str(tmp_path / part / "x.png"), np.zeros((8, 8), np.uint8))
    real_scandir = os.scandir

    def scandir(path="."):  # tests run as root, who can list anything: refuse one folder by hand
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert list_image_names(tmp_path) == [str(tmp_path / "open" / "x.png")]
    assert "locked: cannot list this folder (Permission denied)" in capsys.readouterr().err


def test_any_decoder_exception_is_an_image_error(monkeypatch):
    def exploding(*args, **kwargs):
        raise cv2.error("OpenCV(4.x) imgcodecs: something inside the decoder")

    monkeypatch.setattr(cv2, "imdecode", exploding)
    with pytest.raises(ImageDecodeError, match="the decoder failed"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "odd.png")


def test_a_symlink_loop_is_walked_once(tmp_path):
    root = tmp_path / "loop"
    (root / "a").mkdir(parents=True)
    cv2.imwrite(str(root / "a" / "x.png"), np.zeros((8, 8), np.uint8))
    os.symlink("..", root / "a" / "up")  # a/up -> loop/, forever
    os.symlink(root / "a", root / "again")  # a second way into a/
    assert list_image_names(root) == [str(root / "a" / "x.png")]


def test_resume_refuses_rows_of_another_bundle_or_an_unrelated_file(bundle, folder, tmp_path):
    out = tmp_path / "results.csv"
    assert score(folder, "--model", bundle, "--out", out).exit_code == 5
    other = score(folder, "--model", bundle, "--out", out, "--resume", "--threshold", "0.3")
    assert other.exit_code == 2 and "written with another bundle or threshold (threshold differ" in other.output
    manifest = json.loads((bundle / "adegan.json").read_text())
    manifest["score"]["mu_e"] *= 1.5  # a recalibrated bundle scores differently
    (bundle / "adegan.json").write_text(json.dumps(manifest))
    recalibrated = score(folder, "--model", bundle, "--out", out, "--resume")
    assert recalibrated.exit_code == 2 and "bundle_sha256" in recalibrated.output
    unrelated = tmp_path / "sales.csv"
    unrelated.write_text("region,total\nnorth,3\n")
    refused = score(folder, "--model", bundle, "--out", unrelated, "--resume")
    assert refused.exit_code == 2 and "not a results file of adegan score" in refused.output
    assert unrelated.read_text() == "region,total\nnorth,3\n"


def test_an_output_path_that_is_a_folder_is_one_line(bundle, folder, tmp_path):
    (tmp_path / "out.csv").mkdir()
    result = score(folder, "--model", bundle, "--out", tmp_path / "out.csv")
    assert result.exit_code == 2 and "is a folder" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("damage,message", [
    (lambda m: m["score"].pop("threshold"), "lacks score.threshold"),
    (lambda m: m["input"].pop("image_size"), "lacks input.image_size"),
    (lambda m: m.pop("files"), "lists no file hashes"),
])
def test_a_damaged_manifest_is_refused_in_one_line(bundle, folder, tmp_path, damage, message):
    manifest = json.loads((bundle / "adegan.json").read_text())
    damage(manifest)
    (bundle / "adegan.json").write_text(json.dumps(manifest))
    result = score(folder, "--model", bundle, "--out", tmp_path / "r.csv")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_unhashed_files_load_only_with_the_explicit_override(bundle, folder, tmp_path):
    manifest = json.loads((bundle / "adegan.json").read_text())
    manifest.pop("files")
    (bundle / "adegan.json").write_text(json.dumps(manifest))
    result = score(folder, "--model", bundle, "--out", tmp_path / "r.csv", "--unverified-bundle")
    assert result.exit_code == 5, result.output  # scored (the bomb is its one error row)


def test_an_engine_the_manifest_does_not_hash_is_refused(bundle):
    (bundle / "model.engine").write_bytes(b"not from this export")
    with pytest.raises(BundleError, match="not listed in the manifest"):
        BundleModel(bundle, backend="tensorrt")


def test_a_model_whose_graph_differs_from_its_manifest_is_refused(bundle):
    manifest = json.loads((bundle / "adegan.json").read_text())
    manifest["input"]["image_size"] = 64  # the graph takes 32 x 32
    (bundle / "adegan.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"does not match its manifest \(input shape"):
        BundleModel(bundle)


def test_a_bundle_model_releases_its_backend_when_the_block_ends(bundle):
    with BundleModel(bundle) as model:
        assert model.backend.session is not None
    assert model.backend.session is None  # the ONNX Runtime session (and its threads) let go
