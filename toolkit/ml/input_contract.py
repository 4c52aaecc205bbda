"""The one input contract of a model, for `toolkit predict` and the server alike (README "Input contract").

A record names the model's features. Besides them it may carry the label column and the columns
dropped at training (`--drop`): those are ignored, and the answer says which (`ignored`). Any other
name is refused, naming it. In JSON (files, stdin, request bodies) a numeric feature is a JSON
number or null, never a text ("63" is refused: a client that sends it has a bug worth seeing);
only a CSV carries numbers as text. Categorical features take their category as a text, or as the
number the training data had.
"""

from __future__ import annotations

import copy
import math

from toolkit.errors import DataError
from toolkit.ml.row_encoder import FLOAT32_MAX


class RecordError(DataError):
    """A record that breaks the contract: `index` is the record's position, `feature` the field (or None)."""

    def __init__(self, message: str, index: int, feature: str | None = None) -> None:
        super().__init__(message)
        self.index, self.feature = index, feature


class InputContract:
    def __init__(self, manifest: dict, features: list[str], numeric: set[str]) -> None:
        self.features, self.numeric = features, numeric
        training = manifest.get("training") or {}
        self.ignorable = {manifest["label"], *training.get("drop_columns", [])} - set(features)
        self.known = set(features) | self.ignorable
        self.ignored: set[str] = set()  # what the records carried and the model does not take

    @classmethod
    def of(cls, model) -> InputContract:
        return cls(model.manifest, model.preprocessor.columns, {n["name"] for n in model.preprocessor.numeric})

    def fresh(self) -> InputContract:
        """The same contract with nothing ignored yet (one per request)."""
        other = copy.copy(self)
        other.ignored = set()
        return other

    def columns(self, names, source: str, keep: tuple[str, ...] = ()) -> None:
        """A CSV header (or any set of names): unknown names refused; the ignorable ones and `keep`
        (columns the caller carries through, e.g. an id) noted."""
        unknown = sorted(set(names) - self.known - set(keep))
        if unknown:
            raise DataError(f"{source}: unknown column(s) {unknown}; the model takes {self.features}"
                            + (f" and ignores {sorted(self.ignorable)}" if self.ignorable else "")
                            + "; pass --keep COL to carry a column through to the output.")
        self.ignored |= (set(names) & self.ignorable) - set(keep)

    def values(self, index: int, record: dict) -> list:
        """The record's values in feature order; RecordError for a missing, unknown or mistyped field."""
        missing = [f for f in self.features if f not in record]
        if missing:
            raise RecordError(f"missing feature(s) {missing}", index)
        if len(record) != len(self.features):
            unknown = sorted(set(record) - self.known)
            if unknown:
                raise RecordError(f"unknown feature(s) {unknown}; the model takes {self.features}"
                                  + (f" and ignores {sorted(self.ignorable)}" if self.ignorable else ""), index)
            self.ignored |= set(record) - set(self.features)
        values = [record[f] for f in self.features]
        for name, value in zip(self.features, values, strict=True):
            self.check_value(index, name, value)
        return values

    def check_value(self, index: int, name: str, value) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"{value} is not a finite number", index, name)
        if isinstance(value, (int, float)) and not _fits_float32(value):
            raise RecordError(f"{_short(value)} is outside the float32 range the model computes in", index, name)
        if name in self.numeric and isinstance(value, str):
            raise RecordError(f"expected a number or null, got the string {value!r} (in JSON a number is a JSON number)", index, name)
        if isinstance(value, (dict, list)):
            raise RecordError("holds an object or a list; a feature value is a number, a text or null", index, name)


def _fits_float32(value: int | float) -> bool:
    try:
        return abs(float(value)) <= FLOAT32_MAX
    except OverflowError:  # an integer beyond any float
        return False


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"
