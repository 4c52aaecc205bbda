"""Releases and the records the toolkit keeps of them between commands.

A `Release` is what gets deployed: an image pinned by digest and the model version baked into
it. `ReleaseRecords` holds, per environment, the last build, the last push (what `deploy` takes
by default) and the local runtime's release history, each a JSON file under `.local/`, written
atomically by one writer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from toolkit.errors import BadInputError, ToolkitError
from toolkit.paths import ProjectPaths, read_json, write_json

HISTORY_LIMIT = 20


@dataclass(frozen=True)
class Release:
    image: str  # registry/repository@sha256:...
    model_version: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", self.image):
            raise BadInputError(f"image {self.image!r} is not pinned by digest (<registry>/<repository>@sha256:<64 hex>).")

    def to_dict(self) -> dict:
        return {"image": self.image, "model_version": self.model_version}

    @classmethod
    def from_dict(cls, data: dict) -> Release:
        return cls(data["image"], data["model_version"])


# ---------------------------------------------------------------- release history (any runtime)


def with_release(history: list[Release], release: Release) -> list[Release]:
    """The history after deploying `release`: it moves to the end; the oldest fall off."""
    return ([r for r in history if r != release] + [release])[-HISTORY_LIMIT:]


def rollback_target(history: list[Release], live: Release | None, env: str) -> Release:
    """The release before the live one."""
    earlier = [r for r in history if r != live]
    if not earlier:
        raise ToolkitError(f"nothing to roll back to: the release history of {env} holds no earlier release.")
    return earlier[-1]


def without_release(history: list[Release], release: Release | None) -> list[Release]:
    """The history after rolling `release` back: it leaves."""
    return [r for r in history if r != release]


def history_to_json(history: list[Release]) -> list[dict]:
    return [r.to_dict() for r in history[-HISTORY_LIMIT:]]


def history_from_json(entries: list[dict]) -> list[Release]:
    return [Release.from_dict(e) for e in entries]


# ---------------------------------------------------------------- records under .local/


class ReleaseRecords:
    """What `toolkit build`, `push` and the local runtime remember for one environment."""

    def __init__(self, paths: ProjectPaths, env: str) -> None:
        self.paths, self.env = paths, env

    def _file(self, kind: str):
        return self.paths.record(f"{kind}-{self.env}")

    # -- builds
    def save_build(self, image: str, image_id: str, training_image: str | None, model_dir: str | None = None) -> None:
        write_json(self._file("last-build"), {"image": image, "id": image_id, "training_image": training_image,
                                              "model_dir": model_dir})

    def last_build(self, key: str = "image") -> str | None:
        """The last build's serving image (key "image") or training image ("training_image")."""
        record = read_json(self._file("last-build"))
        if record is None:
            raise ToolkitError(f"no image built for {self.env} yet: run `toolkit build --env {self.env}` or pass --image.")
        return record.get(key)

    def built_model_dir(self, image: str) -> str | None:
        """The model directory the last build of `image` baked in."""
        record = read_json(self._file("last-build")) or {}
        return record.get("model_dir") if record.get("image") == image else None

    # -- pushes
    def save_push(self, release: Release, training_image: str | None = None) -> None:
        write_json(self._file("last-push"), {**release.to_dict(), "training_image": training_image})

    def last_push(self, image: str | None = None, model_version: str | None = None) -> Release:
        """--image REF (pinned by digest) or the last `toolkit push --env ENV`."""
        if image:
            return Release(image, model_version or "unknown")
        record = read_json(self._file("last-push"))
        if record is None:
            raise BadInputError(f"no image pushed for {self.env} yet: run `make release ENV={self.env}` or pass "
                                "--image <registry>/<repo>@sha256:<digest>.")
        return Release(record["image"], model_version or record["model_version"])

    def training_pushed_with(self, release: Release) -> str | None:
        """The training image pushed together with `release` (None if it was pushed alone or elsewhere)."""
        record = read_json(self._file("last-push")) or {}
        return record.get("training_image") if record.get("image") == release.image else None

    def training_release(self) -> Release:
        """The training image of the last push (what the GPU Job runs)."""
        image = (read_json(self._file("last-push")) or {}).get("training_image")
        if not image:
            raise BadInputError(f"no training image pushed for {self.env} yet: run `make build push ENV={self.env}` first.")
        return Release(image, "training")

    # -- the local runtime's deployed releases
    def history(self) -> list[Release]:
        return history_from_json(read_json(self._file("releases"), []))

    def save_history(self, history: list[Release]) -> None:
        write_json(self._file("releases"), history_to_json(history))
