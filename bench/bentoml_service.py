"""BentoML's contender for bench/serve_throughput.py: the same numpy forward on preprocessed rows as
bench/reference_server.py, as a BentoML service (run by the bench in a venv of its own). MODEL_DIR
names the artifact; the toolkit's model loader comes from the checkout (PYTHONPATH), not installed."""

import os

import bentoml
import numpy as np

from toolkit.ml.artifacts import load_artifact


@bentoml.service(workers=1)
class Classifier:
    def __init__(self) -> None:
        self.model = load_artifact(os.environ["MODEL_DIR"])

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> dict:
        return {"probabilities": self.model.predict_proba(np.asarray(instances, dtype=np.float32)).tolist()}
