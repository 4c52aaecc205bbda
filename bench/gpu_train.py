"""GPU training throughput: our numpy core on CuPy vs PyTorch on CUDA, side by side in one run.

The same task for both: an MLP 64 → W → W → 10 (ReLU), softmax cross-entropy, Adam (lr 1e-3),
float32, at widths W = 256, 1024, 4096 and batches 256 and 4096; samples/s over whole epochs of
synthetic data resident on the GPU (each contender warms up first: CuPy compiles its kernels,
cuBLAS picks its algorithms). Also checks that our CuPy run agrees with our NumPy run from the same
seed (same initial weights and batches): the largest difference in test-set probabilities.
Target (issue 28): within 1.5× of PyTorch at width ≥ 1024.

Where CuPy or a CUDA GPU is missing it says what is missing and exits 0.

    python bench/gpu_train.py [--samples 65536] [--epochs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from toolkit.ml.nn import device as devices  # noqa: E402
from toolkit.ml.nn.losses import SoftmaxCrossEntropy  # noqa: E402
from toolkit.ml.nn.model import Sequential, mlp_spec, probabilities_from_logits  # noqa: E402
from toolkit.ml.nn.optimizers import Adam  # noqa: E402
from toolkit.ml.nn.training import fit  # noqa: E402

IN, CLASSES, LR = 64, 10, 1e-3
WIDTHS, BATCHES = (256, 1024, 4096), (256, 4096)
AGREEMENT_TOLERANCE = 1e-3  # float32 on both sides; cuBLAS and OpenBLAS sum in different orders


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, IN)).astype(np.float32)
    teacher = rng.standard_normal((IN, CLASSES)) / np.sqrt(IN)
    return x, (np.tanh(x @ teacher) * 3 + rng.gumbel(size=(n, CLASSES)) * 0.3).argmax(axis=1).astype(np.int64)


def run_ours(device, x, y, width: int, batch: int, epochs: int) -> float:
    rng = np.random.default_rng(0)
    model = Sequential(IN, mlp_spec([width, width], CLASSES), device=device).initialize(rng)
    fit(model, SoftmaxCrossEntropy(), Adam(LR), x[: batch * 4], y[: batch * 4], epochs=1, batch_size=batch, rng=rng)  # warm-up
    device.xp.cuda.Device().synchronize()
    start = time.perf_counter()
    fit(model, SoftmaxCrossEntropy(), Adam(LR), x, y, epochs=epochs, batch_size=batch, rng=rng)
    device.xp.cuda.Device().synchronize()
    return len(x) * epochs / (time.perf_counter() - start)


def run_torch(x, y, width: int, batch: int, epochs: int) -> float:
    import torch

    torch.manual_seed(0)
    cuda = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Linear(IN, width), torch.nn.ReLU(), torch.nn.Linear(width, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, CLASSES)).to(cuda)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x).to(cuda), torch.from_numpy(y).to(cuda)

    def train(rounds: int, rows: int) -> None:
        for _ in range(rounds):
            order = torch.randperm(rows, device=cuda)
            xs, ys = xt[order], yt[order]
            for start in range(0, rows, batch):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(xs[start : start + batch]), ys[start : start + batch]).backward()
                optimizer.step()

    train(1, batch * 4)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    train(epochs, len(x))
    torch.cuda.synchronize()
    return len(x) * epochs / (time.perf_counter() - start)


def agreement(device) -> float:
    """Largest |p_cupy - p_numpy| on held-out rows after 2 epochs from the same seed."""
    x, y = make_data(8192, seed=1)
    probabilities = []
    for on in (devices.CPU, device):
        rng = np.random.default_rng(3)
        model = Sequential(IN, mlp_spec([256, 256], CLASSES), device=on).initialize(rng)
        fit(model, SoftmaxCrossEntropy(), Adam(LR), x[:6144], y[:6144], epochs=2, batch_size=256, rng=rng)
        probabilities.append(probabilities_from_logits(model.predict_logits(x[6144:]), "softmax"))
    return float(np.abs(probabilities[0] - probabilities[1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=65536)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    try:
        device = devices.gpu_device()
    except devices.DeviceUnavailable as missing:
        print(f"no GPU here: {missing}. Nothing to measure; run this on a GPU node (the training-gpu image has CuPy).")
        return
    print(devices.summary(device))
    try:
        import torch

        torch_cuda = torch.cuda.is_available()
    except ImportError:
        torch_cuda = False
    x, y = make_data(args.samples)
    rows = []
    print(f"{'width':>6}{'batch':>7}{'ours (CuPy)/s':>16}{'PyTorch CUDA/s':>16}{'PyTorch ÷ ours':>16}")
    for width in WIDTHS:
        for batch in BATCHES:
            ours = run_ours(device, x, y, width, batch, args.epochs)
            theirs = run_torch(x, y, width, batch, args.epochs) if torch_cuda else None
            rows.append({"width": width, "batch": batch, "ours": ours, "pytorch": theirs})
            ratio = f"{theirs / ours:.2f}×" if theirs else "(no CUDA PyTorch)"
            print(f"{width:>6}{batch:>7}{ours:>16,.0f}{(theirs or 0):>16,.0f}{ratio:>16}", flush=True)
    difference = agreement(device)
    print(f"CuPy vs NumPy from the same seed: max |Δp| {difference:.2e} (tolerance {AGREEMENT_TOLERANCE:g})")
    wide = [r["pytorch"] / r["ours"] for r in rows if r["width"] >= 1024 and r["pytorch"]]
    if wide:
        print(f"target (within 1.5× of PyTorch at width ≥ 1024): {'met' if max(wide) <= 1.5 else 'NOT met'} (worst {max(wide):.2f}×)")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"device": device.describe(), "rows": rows, "max_probability_difference": difference}, handle, indent=2)


if __name__ == "__main__":
    main()
