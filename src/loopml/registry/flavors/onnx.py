"""ONNX: the serialised graph bytes, run with ONNX Runtime.

Accepts ONNX bytes or an ``onnx.ModelProto`` (e.g. from skl2onnx). Two input layouts are
understood: one 2-D tensor holding every column in signature order (what skl2onnx emits for
``FloatTensorType([None, n])``), or one tensor per column named like the column. Classifier
graphs from skl2onnx (a label output and a probability output, ZipMap or plain tensor) get
``predict_proba`` with the labels the graph declares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError
from loopml.registry.flavors.base import Flavor, Predictor, Saved

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxPredictor(Predictor):
    accepts_numpy = True

    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = session.get_inputs()
        outputs = session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.label_output = next((o for o in self.output_names if "label" in o.lower()), None)
        self.proba_output = next((o for o in self.output_names if "prob" in o.lower()), None)
        self._proba_cache: tuple[int, np.ndarray] | None = None
        if self.label_output and self.proba_output:
            self.classes = self._declared_classes()

    def _declared_classes(self) -> list[Any] | None:
        meta = self.session.get_modelmeta().custom_metadata_map
        if "classes" in meta:
            return [c for c in meta["classes"].split(",")]
        return None  # resolved from the first probability output (ZipMap keys) or its width

    def _feed(self, X: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            spec = self.inputs[0]
            matrix = X.to_numpy() if isinstance(X, pd.DataFrame) else X
            return {spec.name: np.asarray(matrix, dtype=_NP_TYPES.get(spec.type, np.float32))}
        frame = X if isinstance(X, pd.DataFrame) else None
        feed = {}
        for i, spec in enumerate(self.inputs):
            column = frame[spec.name].to_numpy() if frame is not None else X[:, i]
            feed[spec.name] = np.asarray(column, dtype=_NP_TYPES.get(spec.type, np.float32)).reshape(-1, 1)
        return feed

    def _run(self, X: pd.DataFrame | np.ndarray) -> list[Any]:
        return self.session.run(None, self._feed(X))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        out = self._run(X)
        if self.label_output:
            return np.asarray(out[self.output_names.index(self.label_output)])
        first = np.asarray(out[0])
        return first[:, 0] if first.ndim == 2 and first.shape[1] == 1 else first

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if not (self.label_output and self.proba_output):
            return super().predict_proba(X)
        raw = self._run(X)[self.output_names.index(self.proba_output)]
        if isinstance(raw, list) and raw and isinstance(raw[0], dict):  # ZipMap: list of {label: p}
            keys = list(raw[0].keys())
            if self.classes is None:
                self.classes = keys
            return np.array([[row[k] for k in keys] for row in raw], dtype=np.float64)
        proba = np.asarray(raw, dtype=np.float64)
        if self.classes is None:
            self.classes = list(range(proba.shape[1]))
        return proba

    @property
    def is_classifier(self) -> bool:
        return bool(self.label_output and self.proba_output)

    def signature_problems(self, names: list[str]) -> list[str]:
        if len(self.inputs) == 1:
            shape = self.inputs[0].shape
            width = shape[1] if len(shape) == 2 else None
            if isinstance(width, int) and width != len(names):
                return [
                    f"the ONNX graph's input {self.inputs[0].name!r} takes {width} columns but the signature "
                    f"has {len(names)}; make the signature match the graph's input"
                ]
            return []
        graph = [i.name for i in self.inputs]
        if sorted(graph) != sorted(names):
            return [
                f"the ONNX graph's inputs are {graph} but the signature has {names}; name columns like the inputs"
            ]
        return []


class OnnxFlavor(Flavor):
    name = "onnx"

    def matches(self, model: Any) -> bool:
        if isinstance(model, bytes | bytearray):
            return True
        return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")

    def save(self, model: Any) -> Saved:
        import onnxruntime

        data = bytes(model) if isinstance(model, bytes | bytearray) else model.SerializeToString()
        session = _session(data)
        meta = {
            "onnxruntime_version": onnxruntime.__version__,
            "inputs": [
                {"name": i.name, "type": i.type, "shape": [str(s) for s in i.shape]}
                for i in session.get_inputs()
            ],
            "outputs": [o.name for o in session.get_outputs()],
        }
        return Saved(data, meta)

    def load(self, data: bytes, meta: dict[str, Any]) -> Predictor:
        return OnnxPredictor(_session(data))


def _session(data: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # per-request latency beats throughput here; serving scales by workers
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes for malformed graphs
        raise ValidationError(
            f"these bytes are not a loadable ONNX model ({exc}); export the model again"
        ) from None
