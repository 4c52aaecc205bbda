"""Training throughput: our numpy core vs PyTorch (CPU) vs scikit-learn, in one run.

The same task for all three: an MLP 64 → 256 → 256 → 10 (ReLU), softmax cross-entropy,
Adam (lr 1e-3), batch 256, float32, 200,000 synthetic samples, 3 epochs. Prints samples/s
(median over repeats, the runs interleaved so machine noise hits everyone alike), the
ratios, final test accuracy, and our achieved GFLOP/s against a measured float32 matmul peak.

Each run is a fresh worker process (this script with --worker), so one library's thread
pool never competes with another's; every worker gets the same thread settings (OpenBLAS, OpenMP
and MKL threads = the core count, torch.set_num_threads likewise) and does a short untimed
warm-up first. The spread of each contender's repeats is printed: on a shared VM the machine's
own speed moves between runs, which interleaving spreads over every contender alike.

Targets (issue 28): ≥ 2× PyTorch CPU and ≥ 60 % of the measured float32 matmul peak, with each
contender's repeats within 20 % of each other.

    make bench                      # installs the `bench` extra first
    python bench/train_throughput.py [--repeats 3] [--samples 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from toolkit.ml.nn.losses import SoftmaxCrossEntropy  # noqa: E402
from toolkit.ml.nn.model import Sequential, mlp_spec  # noqa: E402
from toolkit.ml.nn.optimizers import Adam  # noqa: E402
from toolkit.ml.nn.training import fit  # noqa: E402

IN, HIDDEN, CLASSES, BATCH, LR = 64, (256, 256), 10, 256, 1e-3
CORES = str(os.cpu_count() or 1)
THREADS = {**os.environ, "OPENBLAS_NUM_THREADS": CORES, "OMP_NUM_THREADS": CORES, "MKL_NUM_THREADS": CORES}


def make_data(n_train: int, n_test: int, seed: int = 0):
    """Labels from a random 'teacher' MLP, so the task is learnable but not trivial."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_train + n_test, IN)).astype(np.float32)
    w1 = rng.standard_normal((IN, 128)) / np.sqrt(IN)
    w2 = rng.standard_normal((128, CLASSES)) / np.sqrt(128)
    logits = np.tanh(x @ w1) @ w2 * 3 + rng.gumbel(size=(len(x), CLASSES)) * 0.3
    y = logits.argmax(axis=1).astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def flops_per_sample() -> int:
    """Forward MACs×2, backward (weight grads for all layers, input grads for all but the
    first) ×2: what every one of the three implementations has to compute."""
    dims = [IN, *HIDDEN, CLASSES]
    macs = [a * b for a, b in itertools.pairwise(dims)]
    return 2 * (sum(macs) + sum(macs) + sum(macs[1:]))


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------- the three contenders


def run_ours(x, y, x_test, y_test, epochs, seed):
    rng = np.random.default_rng(seed)
    model = Sequential(IN, mlp_spec(list(HIDDEN), CLASSES)).initialize(rng)
    seconds = _timed(lambda: fit(model, SoftmaxCrossEntropy(), Adam(LR), x, y, epochs=epochs, batch_size=BATCH, rng=rng))
    accuracy = float((model.predict_logits(x_test).argmax(axis=1) == y_test).mean())
    return seconds, accuracy


def run_torch(x, y, x_test, y_test, epochs, seed):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = torch.nn.Sequential(
        torch.nn.Linear(IN, HIDDEN[0]), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[0], HIDDEN[1]), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[1], CLASSES),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train():
        for _ in range(epochs):
            # The strongest plain loop: one shuffled copy per epoch, contiguous batches.
            order = torch.randperm(len(xt))
            xs, ys = xt[order], yt[order]
            for start in range(0, len(xs), BATCH):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(xs[start : start + BATCH]), ys[start : start + BATCH]).backward()
                optimizer.step()

    seconds = _timed(train)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    return seconds, accuracy


def run_sklearn(x, y, x_test, y_test, epochs, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=HIDDEN, activation="relu", solver="adam", alpha=0.0, batch_size=BATCH,
        learning_rate_init=LR, max_iter=epochs, shuffle=True, tol=0.0, n_iter_no_change=epochs + 1,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seconds = _timed(lambda: model.fit(x, y))
    assert model.coefs_[0].dtype == np.float32, "scikit-learn should train in float32 here"
    return seconds, float((model.predict(x_test) == y_test).mean())


CONTENDERS = {"ours (numpy core)": run_ours, "pytorch cpu": run_torch, "scikit-learn": run_sklearn}


def worker(name: str, data_path: str, epochs: int, seed: int) -> None:
    """One timed run in this process; prints {"seconds", "accuracy"} as JSON."""
    with np.load(data_path) as data:
        x, y, x_test, y_test = (data[k] for k in ("x", "y", "x_test", "y_test"))
    run = CONTENDERS[name]
    run(x[:4096], y[:4096], x_test[:10], y_test[:10], 1, seed)  # warm-up: thread pools, caches, lazy imports
    seconds, accuracy = run(x, y, x_test, y_test, epochs, seed)
    print(json.dumps({"seconds": seconds, "accuracy": accuracy}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the median is reported")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    parser.add_argument("--worker", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.epochs, args.seed)
        return

    x, y, x_test, y_test = make_data(args.samples, 20_000)
    peak = matmul_peak_gflops()
    print(f"{args.samples:,} samples × {args.epochs} epochs, MLP {IN}→{'→'.join(map(str, HIDDEN))}→{CLASSES}, "
          f"batch {BATCH}, Adam, float32, {os.cpu_count()} cores; float32 matmul peak {peak:.1f} GFLOP/s")
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    accuracies: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as scratch:
        data_path = os.path.join(scratch, "data.npz")
        np.savez(data_path, x=x, y=y, x_test=x_test, y_test=y_test)
        for repeat in range(args.repeats):
            for name in CONTENDERS:
                command = [sys.executable, __file__, "--worker", name, "--data", data_path,
                           "--epochs", str(args.epochs), "--seed", str(repeat)]
                result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=THREADS).stdout)
                rates[name].append(args.samples * args.epochs / result["seconds"])
                accuracies[name].append(result["accuracy"])
                print(f"  repeat {repeat + 1}: {name:<18} {rates[name][-1]:>10,.0f} samples/s  "
                      f"test accuracy {result['accuracy']:.4f}", flush=True)

    median = {name: statistics.median(r) for name, r in rates.items()}
    accuracy = {name: statistics.mean(a) for name, a in accuracies.items()}  # mean over seeds
    ours = median["ours (numpy core)"]
    gflops = ours * flops_per_sample() / 1e9
    print()
    print(f"{'implementation':<20}{'median/s':>12}{'best/s':>12}{'spread':>8}{'ours ÷ this':>13}{'test acc':>10}")
    spread = {name: max(r) / min(r) - 1 for name, r in rates.items()}
    for name in CONTENDERS:
        print(f"{name:<20}{median[name]:>12,.0f}{max(rates[name]):>12,.0f}{spread[name]:>8.0%}{ours / median[name]:>12.2f}×"
              f"{accuracy[name]:>10.4f}")
    fraction = gflops / peak
    print(f"\nours: {gflops:.1f} GFLOP/s = {fraction:.0%} of the {peak:.1f} GFLOP/s float32 matmul peak "
          f"({flops_per_sample():,} FLOP per sample)")
    ratios = {name: ours / median[name] for name in CONTENDERS if not name.startswith("ours")}
    accuracy_gap = max(abs(accuracy["ours (numpy core)"] - a) for a in accuracy.values())
    checks = {"≥ 2× PyTorch CPU": ratios["pytorch cpu"] >= 2.0, "≥ 60 % of the matmul peak": fraction >= 0.6,
              "repeats within 20 %": max(spread.values()) <= 0.2, "accuracy within 1 point": accuracy_gap <= 0.01}
    target_met = all(checks.values())
    print("targets: " + "; ".join(f"{what} {'met' if ok else 'NOT met'}" for what, ok in checks.items())
          + f" (ratios {', '.join(f'{k} {v:.2f}×' for k, v in ratios.items())}; largest spread {max(spread.values()):.0%}; "
            f"accuracy gap {accuracy_gap * 100:.2f} points)")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"samples_per_second": median, "runs": rates, "spread": spread, "test_accuracy": accuracy, "ratios": ratios,
                       "gflops": gflops, "matmul_peak_gflops": peak, "peak_fraction": fraction, "checks": checks,
                       "target_met": target_met}, handle, indent=2)


if __name__ == "__main__":
    main()
