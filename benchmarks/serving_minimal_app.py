"""The practical limit for benchmarks/bench_serving.py: the least a FastAPI handler can do to serve the model.

``POST /predict`` with the same body loopml's endpoint takes (``{"row": {column: value}}``): parse it
with orjson, build a one-row numpy array in the booster's feature order, call ``Booster.predict`` on
one thread, answer ``{"probability": p}``. No validation, no logging, no metrics, no request id.
Served by ``uvicorn benchmarks.serving_minimal_app:app`` with the model file in ``SBENCH_MODEL_FILE``.
"""

from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

booster = lgb.Booster(model_file=os.environ["SBENCH_MODEL_FILE"])
columns = booster.feature_name()
app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> Response:
    row = orjson.loads(await request.body())["row"]
    x = np.array([[row[c] for c in columns]], dtype=np.float64)
    p = float(booster.predict(x, num_threads=1)[0])
    return Response(orjson.dumps({"probability": p}), media_type="application/json")
