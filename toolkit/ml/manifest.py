"""The schema of an artifact's manifest.json, checked before anything it describes is read.

A manifest can be crafted: its own checksum only proves it was not edited after it was written,
not that whoever wrote it meant well. So every value that decides what gets opened or allocated
is checked here first: file names are plain names inside the artifact directory, every file the
loader needs is listed, the network is one the core can build and no bigger than
MAX_PARAMETERS, and the preprocessing, features, classes and output agree with each other.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import ArtifactError
from toolkit.ml.nn.initializers import INITIALIZERS
from toolkit.ml.nn.layers import ACTIVATIONS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
# Files the loader reads; each must be listed (and so verified) by the manifest.
REQUIRED_FILES = (WEIGHTS,)
# Far above any model this toolkit trains (the default has ~500), far below what hurts a server:
# 20 M float32 parameters are 80 MB.
MAX_PARAMETERS = 20_000_000
MAX_UNITS = 65_536
MAX_LAYERS = 64
MAX_FEATURES = 100_000
# A plain file name: no directory part, no leading dot (so no '.', '..' or hidden files).
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class DenseSpec(_Strict):
    type: Literal["dense"]
    units: int = Field(ge=1, le=MAX_UNITS)
    init: Literal[tuple(INITIALIZERS)] = "he"  # type: ignore[valid-type]


class ActivationSpec(_Strict):
    type: Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]


LayerSpec = Annotated[Union[DenseSpec, ActivationSpec], Field(discriminator="type")]


class Architecture(_Strict):
    input_dim: int = Field(ge=1, le=MAX_FEATURES)
    layers: list[LayerSpec] = Field(min_length=1, max_length=MAX_LAYERS)
    output: Literal["sigmoid", "softmax", "identity"]  # identity: a regressor's one standardized value
    dtype: Literal["float32", "float64"] = "float32"

    def parameter_count(self) -> int:
        count, width = 0, self.input_dim
        for layer in self.layers:
            if isinstance(layer, DenseSpec):
                count += width * layer.units + layer.units
                width = layer.units
        return count

    def output_units(self) -> int:
        return next(layer.units for layer in reversed(self.layers) if isinstance(layer, DenseSpec))

    @model_validator(mode="after")
    def _bounded(self) -> Architecture:
        if not any(isinstance(layer, DenseSpec) for layer in self.layers):
            raise ValueError("the network has no dense layer")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ValueError(f"{self.parameter_count():,} parameters is over the limit of {MAX_PARAMETERS:,}")
        return self


class _MeanStd(_Strict):
    mean: float
    std: float = Field(gt=0)

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class NumericFeature(_MeanStd):
    name: str = Field(min_length=1)


class CategoricalFeature(_Strict):
    name: str = Field(min_length=1)
    categories: list[str] = Field(max_length=MAX_FEATURES)
    fill: str | None


class Preprocessing(_Strict):
    columns: list[str] = Field(min_length=1, max_length=MAX_FEATURES)
    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]

    def width(self) -> int:
        return len(self.numeric) + sum(len(c.categories) for c in self.categorical)

    @model_validator(mode="after")
    def _columns_match(self) -> Preprocessing:
        encoded = [n.name for n in self.numeric] + [c.name for c in self.categorical]
        if sorted(encoded) != sorted(self.columns) or len(set(self.columns)) != len(self.columns):
            raise ValueError("columns must name each numeric and categorical feature exactly once")
        return self


class TargetScaling(_MeanStd):
    """A regressor's label standardization: value = output · std + mean."""


class Manifest(BaseModel):
    """The parts of manifest.json the loader relies on; report fields (metrics, dataset, ...) pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format_version: Literal[1]
    version: str = Field(min_length=1, max_length=200)
    checksum: str
    files: dict[FileName, FileEntry]
    architecture: Architecture
    preprocessing: Preprocessing
    feature_names: list[str]
    task: Literal["classification", "regression"] = "classification"
    classes: list[str]
    label: str
    target: str | None = None
    target_scaling: TargetScaling | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        missing = [name for name in REQUIRED_FILES if name not in self.files]
        if missing:
            raise ValueError(f"files must list {missing}: the loader reads only what the manifest lists and verifies")
        if MANIFEST in self.files:
            raise ValueError(f"files must not list {MANIFEST} itself")
        width = self.preprocessing.width()
        if not self.architecture.input_dim == len(self.feature_names) == width:
            raise ValueError(f"architecture.input_dim ({self.architecture.input_dim}), feature_names ({len(self.feature_names)}) "
                             f"and the preprocessing's encoded width ({width}) must be equal")
        if self.task == "regression":
            if self.classes or self.architecture.output != "identity" or self.target_scaling is None:
                raise ValueError("a regressor has no classes, an identity output and its target_scaling")
            if self.architecture.output_units() != 1:
                raise ValueError(f"a regressor's last dense layer has 1 unit, not {self.architecture.output_units()}")
            return self
        if len(self.classes) < 2 or self.architecture.output == "identity":
            raise ValueError(f"a classifier has at least 2 classes and a sigmoid or softmax output; the manifest lists "
                             f"{len(self.classes)} class(es) and output {self.architecture.output}")
        expected = 1 if self.architecture.output == "sigmoid" else len(self.classes)
        if self.architecture.output == "sigmoid" and len(self.classes) != 2:
            raise ValueError(f"a sigmoid output scores 2 classes, the manifest lists {len(self.classes)}")
        if self.architecture.output_units() != expected:
            raise ValueError(f"the last dense layer has {self.architecture.output_units()} units; "
                             f"{self.architecture.output} over {len(self.classes)} classes needs {expected}")
        return self


def check_manifest(raw: object, where: str) -> Manifest:
    """The manifest as a checked model; ArtifactError naming the first bad field otherwise."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ArtifactError(f"{where}: {location}: {error['msg'].removeprefix('Value error, ')}{more}.") from None
