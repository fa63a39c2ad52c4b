"""Regenerate samples/fashion-mnist/ (the quickstart data) from the Debian package
`dataset-fashion-mnist` (Fashion-MNIST by Zalando Research, MIT licence).

    python scripts/make_sample_data.py --anomaly-class 1

Layout (like MVTec AD): train/good/ holds normal images only; test/good/ holds unseen normals;
test/<class name>/ holds the anomalies. Normals are every class but the anomaly class.
Train images come from the official train split, test images from the official test split.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from adegan.training.data import CLASS_NAMES, _read_idx

SOURCE = Path("/usr/share/datasets/fashion-mnist")
LICENSE = """Fashion-MNIST sample (a subset of the test and train images, unchanged 28x28 PNGs).

Fashion-MNIST is Copyright (c) 2017 Zalando SE, https://tech.zalando.com,
and is released under the MIT License:

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

Source: Debian package dataset-fashion-mnist; regenerate with scripts/make_sample_data.py.
"""


def write(folder: Path, images: np.ndarray, indices: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in indices:
        cv2.imwrite(str(folder / f"{index:05d}.png"), images[index], [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomaly-class", type=int, default=1)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=300, help="normals and anomalies each")
    parser.add_argument("--out", type=Path, default=Path("samples/fashion-mnist"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train_x, train_y = _read_idx(SOURCE / "train-images-idx3-ubyte.gz"), _read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
    test_x, test_y = _read_idx(SOURCE / "t10k-images-idx3-ubyte.gz"), _read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")
    if args.out.exists():
        shutil.rmtree(args.out)
    pick = lambda mask, n: np.sort(rng.choice(np.flatnonzero(mask), n, replace=False))
    write(args.out / "train" / "good", train_x, pick(train_y != args.anomaly_class, args.train))
    write(args.out / "test" / "good", test_x, pick(test_y != args.anomaly_class, args.test))
    write(args.out / "test" / CLASS_NAMES["fashion-mnist"][args.anomaly_class], test_x,
          pick(test_y == args.anomaly_class, args.test))
    (args.out / "LICENSE").write_text(LICENSE)


if __name__ == "__main__":
    main()
