"""The minimal reference for bench/serve_throughput.py: a bare FastAPI endpoint that parses
rows of preprocessed floats and calls the same numpy forward, with no validation,
preprocessing or metrics. MODEL_DIR names the artifact."""

import os

import numpy as np
from fastapi import FastAPI, Request

from toolkit.ml.artifacts import load_artifact

model = load_artifact(os.environ["MODEL_DIR"])
app = FastAPI()


@app.post("/predict")
async def predict(request: Request):
    rows = np.asarray((await request.json())["instances"], dtype=np.float32)
    return {"probabilities": model.predict_proba(rows).tolist()}
