"""Probe (not a result table): does smoothing the patch-distance map before its maximum help?

Scores KolektorSDD-style data with the default patch memory bank and compares aggregations of its
heat-map: the max (default) and the max of a 3x3, 5x5 or 9x9 (in patch steps) mean. Phase `val`
uses synthetic defects on held-out training normals only (defect_benchmark.validation_split), so
the choice needs no test images; phase `test CHOICE` scores the real test folds for the max and
one chosen aggregation.

    python benchmarks/patch_aggregation_probe.py PATH/kolektorsdd_256.npz val
"""
import sys, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from defect_benchmark import load_npz, model_images, make_folds, validation_split
from adegan.training.config import ModelConfig, MemoryBankConfig
from adegan.training.memory_bank import build_detector
from adegan.training.inference import detector_outputs
from adegan.training.metrics import roc_auc
npz, phase = sys.argv[1], sys.argv[2]; choice = sys.argv[3] if len(sys.argv) > 3 else None
d = load_npz(Path(npz))
imgs = model_images(d['images'], 256, 1)
AGG = {'max': (1,), 'smooth3': (3,), 'smooth5': (5,), 'smooth9': (9,)}
def aggregate(res, k):
    r = torch.from_numpy(res)
    # residual is at pixel resolution (upsampled from stride-8 map): k patch steps = 8k px
    if k > 1: r = F.avg_pool2d(r, 8 * k, stride=4, padding=0)
    return r.flatten(1).max(1).values.numpy()
out = {a: [] for a in AGG}
for fold, test_index in enumerate(make_folds(d, 5, 0)):
    train_index = np.setdiff1d(np.flatnonzero(d['labels'] == 0), test_index)
    if phase == 'val':
        tr, te, lab, _ = validation_split(imgs, train_index, fold)
    else:
        tr, te, lab = imgs[train_index], imgs[test_index], d['labels'][test_index]
    det, _ = build_detector(ModelConfig(image_size=256, channels=1), MemoryBankConfig(), tr, 'cpu', 0)
    e, p, res = detector_outputs(det, te, 'cpu', with_residual=True)
    for a, (k,) in AGG.items():
        if choice and a not in (choice, 'max'): continue
        out[a].append(roc_auc(lab, aggregate(res, k)))
    print(phase, fold, {a: round(v[-1], 3) for a, v in out.items() if v}, flush=True)
print(phase, 'MEAN', {a: round(float(np.mean(v)), 4) for a, v in out.items() if v})
