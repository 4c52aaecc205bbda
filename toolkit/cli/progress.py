"""Progress on stderr for long work: training epochs, image pushes, rollouts (no bars in non-TTY logs)."""

from __future__ import annotations

import sys

from toolkit.cli.options import echo_err

PUSH_DONE = ("Pushed", "Layer already exists")


class EpochProgress:
    """A per-epoch progress bar showing loss and validation metrics (tqdm)."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        self.enabled, self.epochs, self.bar = enabled, epochs, None

    def update(self, record: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None or record["epoch"] == 1:
            self.close()
            from tqdm import tqdm

            self.bar = tqdm(total=self.epochs, desc="train", unit="epoch", file=sys.stderr, leave=False, dynamic_ncols=True,
                            disable=None)  # no bar in non-TTY logs
        scores = ({"val_r2": f"{record['val_r2']:.3f}", "val_rmse": f"{record['val_rmse']:.4g}"} if "val_r2" in record else
                  {"val_acc": f"{record.get('val_accuracy', float('nan')):.3f}", "val_auc": f"{record.get('val_roc_auc', float('nan')):.3f}"})
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", val_loss=f"{record.get('val_loss', float('nan')):.4f}", **scores,
                             refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PushProgress:
    """A byte progress bar over all layers of a push, plus one line per finished layer."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None
        self.layers: dict[str, tuple[int, int]] = {}

    def update(self, event: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=0, desc="push", unit="B", unit_scale=True, file=sys.stderr, leave=True, disable=None)
        layer, status = event["id"], event["status"]
        detail = event.get("progressDetail") or {}
        if "total" in detail:
            self.layers[layer] = (detail.get("current", 0), detail["total"])
        elif status in PUSH_DONE and layer in self.layers:
            self.layers[layer] = (self.layers[layer][1], self.layers[layer][1])
        if status in PUSH_DONE:
            self.bar.write(f"{layer}: {status}", file=sys.stderr)
        self.bar.total = sum(t for _, t in self.layers.values())
        self.bar.n = sum(c for c, _ in self.layers.values())
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class RolloutProgress:
    """One status line per change of the rollout's state."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.last = enabled, None

    def __call__(self, event: dict) -> None:
        if self.enabled and event["message"] != self.last:
            self.last = event["message"]
            echo_err(f"  [{event['elapsed']:5.1f}s] {event['message']}")


class SweepProgress:
    """Work items done, the best setting so far and an ETA (tqdm's)."""

    def __init__(self, total: int, done: int, metric: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc="sweep", unit="fold", file=sys.stderr, leave=False,
                            dynamic_ncols=True, disable=None)
        self.metric = metric

    def show(self, done: int, **status) -> None:
        """Items finished so far, and what else to show (e.g. a Job's active pods)."""
        if self.bar is None:
            return
        self.bar.n = done
        self.bar.set_postfix(**status)

    def update(self, best: dict | None) -> None:
        if self.bar is None:
            return
        if best is not None:
            self.bar.set_postfix(best=f"trial {best['trial']} {self.metric} {best[self.metric]:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
