"""Face screening models, registered with the ``python`` flavor.

Input rows (small, because the inference log stores them): ``{"image_path": str, "width": int,
"height": int}`` - a local file path plus the size the upload reported (kept so monitoring can watch
upload sizes drift). Each model is a binary classifier for serving: ``classes_ = [0, 1]`` and
``predict_proba`` is ``[1 - face_score, face_score]``, so an endpoint answers
``{"label": 0|1, "probability": face_score}`` and gates can compute accuracy/precision/recall.
``predict`` gives the labels (1 = a face, prohibited). The boxes come from ``detect(frame)``
(a DataFrame ``face_score, faces, boxes``) or ``detect_image(img)`` for the mosaic.

- ``HaarFaceDetector`` (v1): OpenCV 4.x's shipped ``haarcascade_frontalface_alt2.xml``; the cascade
  is loaded from ``cv2.data`` in each process (never pickled).
- ``HogFaceClassifier`` (v2): a linear model on HOG windows over an image pyramid that starts
  *above* full size, so 16-px faces in a photo are still 24-px windows; trained by
  ``train_hog_classifier`` with one round of hard-negative mining.
- ``HeavyCheck``: the serial pattern as one model - the light model scores everything, the heavy
  one only the uncertain band.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from loopml.apps.moderation import hog
from loopml.apps.moderation.images import decode_image, to_gray_array
from loopml.apps.moderation.policy import ScreeningPolicy, aggregate, choose_thresholds
from loopml.errors import ValidationError

__all__ = [
    "HaarFaceDetector",
    "HeavyCheck",
    "HogFaceClassifier",
    "ScreeningPolicy",
    "aggregate",
    "choose_thresholds",
    "example_input",
    "train_hog_classifier",
]

INPUT_COLUMNS = ("image_path", "width", "height")
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"


def example_input() -> pd.DataFrame:
    """One valid input row pointing at an image that ships inside scikit-image (for ``register``)."""
    import skimage.data

    path = os.path.join(skimage.data.data_dir, "astronaut.png")
    return pd.DataFrame([{"image_path": path, "width": 512, "height": 512}])


def _paths(frame: Any) -> list[str]:
    if isinstance(frame, pd.DataFrame):
        if "image_path" not in frame.columns:
            raise ValidationError(
                f"the input needs an image_path column (got {list(frame.columns)})", field="image_path"
            )
        return [str(p) for p in frame["image_path"].tolist()]
    if isinstance(frame, dict):
        return _paths(pd.DataFrame([frame]))
    if isinstance(frame, list) and all(isinstance(r, dict) for r in frame):
        return _paths(pd.DataFrame(frame))
    arr = np.asarray(frame, dtype=object)
    if arr.ndim == 2 and arr.shape[1] >= 1:
        return [str(p) for p in arr[:, 0]]
    raise ValidationError(
        f"expected rows of {', '.join(INPUT_COLUMNS)}, got {type(frame).__name__}", field="image_path"
    )


def read_gray(path: str, max_side: int) -> tuple[np.ndarray, float]:
    """(uint8 grayscale at most ``max_side``, scale back to the original pixels); unsafe files refused."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ValidationError(
            f"cannot read image {path!r}: {exc.strerror or exc}", field="image_path"
        ) from None
    try:
        img = decode_image(data, draft_side=max_side)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}", field="image_path") from None
    return _gray_of(img, max_side)


def _gray_of(img: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    gray = to_gray_array(img, max_side)
    return gray, img.size[0] / gray.shape[1]


class _FaceModel:
    """Shared plumbing: rows -> images -> ``_detect_gray`` -> scores, labels and boxes."""

    classes_ = np.array([0, 1])
    max_side: int = 640

    def _detect_gray(self, gray: np.ndarray) -> tuple[float, list[list[int]]]:  # pragma: no cover
        raise NotImplementedError

    def detect_image(self, img: Image.Image) -> dict[str, Any]:
        """``{"face_score", "faces", "boxes"}`` for a decoded image; boxes ``[x, y, w, h]`` in its pixels."""
        gray, scale = _gray_of(img, self.max_side)
        return self._result(gray, scale)

    def _result(self, gray: np.ndarray, scale: float) -> dict[str, Any]:
        score, boxes = self._detect_gray(gray)
        boxes = [[round(v * scale) for v in box] for box in boxes]
        return {"face_score": float(min(max(score, 0.0), 1.0)), "faces": len(boxes), "boxes": boxes}

    def detect(self, frame: Any) -> pd.DataFrame:
        """One row per input row: ``face_score`` (float in [0, 1]), ``faces`` (int), ``boxes`` (list)."""
        rows = [self._result(*read_gray(p, self.max_side)) for p in _paths(frame)]
        return pd.DataFrame(rows, columns=["face_score", "faces", "boxes"])

    def predict_proba(self, frame: Any) -> np.ndarray:
        """``[[1 - face_score, face_score], ...]``: a binary classifier for serving and gates."""
        s = self.detect(frame)["face_score"].to_numpy(dtype=float)
        return np.column_stack([1.0 - s, s])

    def predict(self, frame: Any) -> np.ndarray:
        """1 when the face score is at least 0.5 (a face), else 0."""
        return (self.predict_proba(frame)[:, 1] >= 0.5).astype(int)


class HaarFaceDetector(_FaceModel):
    """v1: OpenCV's Haar cascade. ``face_score = 1 - 0.5 ** (neighbours / min_neighbors)`` of the best
    detection (neighbours = overlapping raw hits, OpenCV's own confidence): 0 without any hit, 0.5
    exactly at the ``min_neighbors`` a face needs to be reported, near 1 for a clear frontal face."""

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: tuple[int, int] = (20, 20),
        max_side: int = 640,
    ) -> None:
        if not (isinstance(scale_factor, int | float) and scale_factor > 1.0):
            raise ValidationError(f"scale_factor must be > 1, got {scale_factor!r}", field="scale_factor")
        if not (isinstance(min_neighbors, int) and min_neighbors >= 1):
            raise ValidationError(
                f"min_neighbors must be an int >= 1, got {min_neighbors!r}", field="min_neighbors"
            )
        if len(min_size) != 2 or min(min_size) < 1:
            raise ValidationError(f"min_size must be (w, h) pixels >= 1, got {min_size!r}", field="min_size")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = (int(min_size[0]), int(min_size[1]))
        self.max_side = int(max_side)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _cascade(self) -> Any:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:  # one per thread: a CascadeClassifier is not safe to share across threads
            import cv2

            # OpenCV's own thread pool on top of the worker's threads and processes oversubscribes the
            # cores: measured 380 ms wall per 640-px image with 2 pool threads under load vs 220 ms
            # with 1, at the same CPU time. Screening parallelism is per job, not inside one image.
            cv2.setNumThreads(1)
            path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise ValidationError(
                    f"OpenCV has no {CASCADE_FILE} at {path}; install opencv-python-headless < 5 "
                    "(4.x ships the Haar cascades)",
                    field="model",
                )
            self._local.cascade = cascade
        return cascade

    def _detect_gray(self, gray: np.ndarray) -> tuple[float, list[list[int]]]:
        import cv2

        rects, neighbours = self._cascade().detectMultiScale2(
            cv2.equalizeHist(gray), self.scale_factor, 1, 0, self.min_size
        )
        if len(rects) == 0:
            return 0.0, []
        n = np.asarray(neighbours).ravel()
        score = 1.0 - 0.5 ** (float(n.max()) / self.min_neighbors)
        boxes = [[int(v) for v in r] for r, k in zip(rects, n, strict=True) if k >= self.min_neighbors]
        return score, boxes


def _sigmoid(x: np.ndarray | float) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; ``boxes`` are (x, y, w, h)."""
    order = np.argsort(-scores)
    keep: list[int] = []
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    while len(order):
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        overlap = inter / (area[i] + area[rest] - inter)
        # also drop a window mostly inside a stronger one (a face's eye region scores too)
        inside = inter / np.minimum(area[i], area[rest])
        order = rest[(overlap <= iou) & (inside <= 0.7)]
    return keep


class HogFaceClassifier(_FaceModel):
    """v2: linear model on 24x24 HOG windows over a pyramid from ``24 / min_face`` times full size down.

    ``face_score`` is the highest window probability; ``boxes`` are windows at or above ``box_at``
    after non-maximum suppression, in the image's pixels.
    """

    def __init__(
        self,
        weights: np.ndarray,
        bias: float,
        *,
        min_face: int = 16,
        max_side: int = 640,
        scale_step: float = 1.25,
        box_at: float = 0.5,
    ) -> None:
        w = np.asarray(weights, dtype=np.float32).ravel()
        if w.shape != (hog.N_FEATURES,):
            raise ValidationError(
                f"weights must have {hog.N_FEATURES} values, got {w.shape}", field="weights"
            )
        if not (8 <= min_face <= 200):
            raise ValidationError(f"min_face must be 8..200 pixels, got {min_face}", field="min_face")
        if not scale_step > 1.0:
            raise ValidationError(f"scale_step must be > 1, got {scale_step}", field="scale_step")
        self.weights = w
        self.bias = float(bias)
        self.min_face = int(min_face)
        self.max_side = int(max_side)
        self.scale_step = float(scale_step)
        self.box_at = float(box_at)

    def scales(self, shape: tuple[int, int]) -> list[float]:
        """Pyramid scales for an image of ``shape``: biggest first, until the window covers the short side."""
        out = []
        s = hog.WINDOW / self.min_face
        while min(shape) * s >= hog.WINDOW:
            out.append(s)
            s /= self.scale_step
        return out

    def window_scores(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All windows: (boxes (n, 4) in ``gray`` pixels, linear scores (n,))."""
        import cv2

        all_boxes, all_scores = [], []
        for s in self.scales(gray.shape):
            size = (max(1, round(gray.shape[1] * s)), max(1, round(gray.shape[0] * s)))
            level = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            blocks = hog.block_features(hog.cell_histograms(level))
            smap = hog.score_map(blocks, self.weights, self.bias)
            if smap.size == 0:
                continue
            ii, jj = np.indices(smap.shape)
            side = hog.WINDOW / s
            boxes = np.column_stack(
                [
                    jj.ravel() * hog.CELL / s,
                    ii.ravel() * hog.CELL / s,
                    np.full(smap.size, side),
                    np.full(smap.size, side),
                ]
            )
            all_boxes.append(boxes)
            all_scores.append(smap.ravel())
        if not all_boxes:
            return np.zeros((0, 4)), np.zeros(0)
        return np.concatenate(all_boxes), np.concatenate(all_scores)

    def _detect_gray(self, gray: np.ndarray) -> tuple[float, list[list[int]]]:
        boxes, scores = self.window_scores(gray)
        if len(scores) == 0:
            return 0.0, []
        score = float(_sigmoid(scores.max()))
        hit = scores >= math.log(self.box_at / (1 - self.box_at))
        if not hit.any():
            return score, []
        idx = np.nonzero(hit)[0]
        idx = idx[np.argsort(-scores[idx])[:300]]
        keep = _nms(boxes[idx], scores[idx], 0.3)
        return score, [[round(v) for v in boxes[idx][k]] for k in keep]


class HeavyCheck(_FaceModel):
    """Serial pattern in one model: ``light`` scores every row; rows whose score falls in
    ``band=(lo, hi)`` are scored again by ``heavy`` and take its answer."""

    def __init__(self, light: _FaceModel, heavy: _FaceModel, band: tuple[float, float] = (0.2, 0.8)) -> None:
        lo, hi = band
        if not (0.0 <= lo < hi <= 1.0):
            raise ValidationError(f"band must be (lo, hi) with 0 <= lo < hi <= 1, got {band}", field="band")
        for name, m in (("light", light), ("heavy", heavy)):
            if not callable(getattr(m, "detect_image", None)):
                raise ValidationError(
                    f"{name} must be a face model (HaarFaceDetector, HogFaceClassifier)", field=name
                )
        self.light, self.heavy, self.band = light, heavy, (float(lo), float(hi))
        self.max_side = max(light.max_side, heavy.max_side)
        self.heavy_calls = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["heavy_calls"] = 0
        return state

    def detect_image(self, img: Image.Image) -> dict[str, Any]:
        first = self.light.detect_image(img)
        if self.band[0] <= first["face_score"] < self.band[1]:
            self.heavy_calls += 1
            return self.heavy.detect_image(img)
        return first

    def detect(self, frame: Any) -> pd.DataFrame:
        rows = []
        for p in _paths(frame):
            with open(p, "rb") as fh:
                data = fh.read()
            try:
                img = decode_image(data, draft_side=self.max_side)
            except ValidationError as exc:
                raise ValidationError(f"{p}: {exc}", field="image_path") from None
            rows.append(self.detect_image(img))
        return pd.DataFrame(rows, columns=["face_score", "faces", "boxes"])


# ---------------------------------------------------------------- training


def _as_gray(image: Any, max_side: int) -> tuple[np.ndarray, float]:
    if isinstance(image, Image.Image):
        return _gray_of(image, max_side)
    if isinstance(image, str | os.PathLike):
        return read_gray(os.fspath(image), max_side)
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return _gray_of(Image.fromarray(arr), max_side)


def _patch(gray: np.ndarray, x: float, y: float, side: float) -> np.ndarray | None:
    """The 26x26 patch (window + 1-px margin) for a square region; None when it is mostly outside."""
    import cv2

    m = side / hog.WINDOW
    x0, y0, x1, y1 = x - m, y - m, x + side + m, y + side + m
    ix0, iy0, ix1, iy1 = math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)
    h, w = gray.shape
    if ix1 - ix0 < 4 or iy1 - iy0 < 4:
        return None
    pad = max(0, -ix0, -iy0, ix1 - w, iy1 - h)
    if pad > side / 2:
        return None
    src = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
    crop = src[iy0 + pad : iy1 + pad, ix0 + pad : ix1 + pad]
    size = hog.WINDOW + 2
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def _positives(
    gray: np.ndarray, boxes: list[list[float]], rng: np.random.Generator, copies: int
) -> list[np.ndarray]:
    """Face windows: each box as given plus jittered copies (position, size, contrast), all mirrored."""
    out = []
    for x, y, w, h in boxes:
        side = float(max(w, h))
        cx, cy = x + w / 2, y + h / 2
        for c in range(copies):
            jitter = 0 if c == 0 else 1
            s = side * (1 + jitter * rng.uniform(-0.1, 0.1))
            dx, dy = (rng.uniform(-0.1, 0.1, 2) * side * jitter).tolist()
            p = _patch(gray, cx - s / 2 + dx, cy - s / 2 + dy, s)
            if p is None:
                continue
            if jitter:  # uploads differ in exposure and contrast; HOG's block norm absorbs most, not all
                gain, offset = rng.uniform(0.6, 1.4), rng.uniform(-30, 30)
                p = np.clip(p.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
            out.append(hog.window_features(p))
            out.append(hog.window_features(p[:, ::-1]))  # mirrored face is still a face
    return out


def _clear_of(boxes: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """True for windows (x, y, side, side) that touch no face box (enlarged by 25 %): safe negatives."""
    if len(faces) == 0 or len(boxes) == 0:
        return np.ones(len(boxes), dtype=bool)
    grow = faces[:, 2:] * 0.25
    fx0, fy0 = faces[:, 0] - grow[:, 0], faces[:, 1] - grow[:, 1]
    fx1, fy1 = faces[:, 0] + faces[:, 2] + grow[:, 0], faces[:, 1] + faces[:, 3] + grow[:, 1]
    bx0, by0 = boxes[:, 0:1], boxes[:, 1:2]
    bx1, by1 = bx0 + boxes[:, 2:3], by0 + boxes[:, 3:4]
    touches = (bx0 < fx1) & (bx1 > fx0) & (by0 < fy1) & (by1 > fy0)
    return ~touches.any(axis=1)


def _random_negatives(
    gray: np.ndarray, faces: np.ndarray, rng: np.random.Generator, count: int, min_face: int
) -> list[np.ndarray]:
    h, w = gray.shape
    out = []
    for _ in range(count * 3):
        if len(out) >= count:
            break
        side = rng.uniform(min_face, max(min_face + 1, min(h, w)))
        x, y = rng.uniform(0, max(1, w - side)), rng.uniform(0, max(1, h - side))
        if not _clear_of(np.array([[x, y, side, side]]), faces)[0]:
            continue
        p = _patch(gray, x, y, side)
        if p is not None:
            out.append(hog.window_features(p))
    return out


def _hard_negatives(
    model: HogFaceClassifier, gray: np.ndarray, faces: np.ndarray, per_image: int
) -> list[np.ndarray]:
    """The current model's strongest face-free windows in one image (non-overlapping, score > -1)."""
    wboxes, scores = model.window_scores(gray)
    if len(scores) == 0:
        return []
    ok = np.nonzero((scores > -1.0) & _clear_of(wboxes, faces))[0]
    if not len(ok):
        return []
    ok = ok[np.argsort(-scores[ok])[: per_image * 20]]
    out = []
    for k in [ok[i] for i in _nms(wboxes[ok], scores[ok], 0.3)[:per_image]]:
        x, yy, side, _ = wboxes[k]
        p = _patch(gray, x, yy, side)
        if p is not None:
            out.append(hog.window_features(p))
    return out


def _fit(X: np.ndarray, y: np.ndarray, seed: int, C: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    clf.fit(X, y)
    return clf.coef_.ravel().astype(np.float32), float(clf.intercept_[0])


def train_hog_classifier(
    images: Sequence[Any],
    labels: Sequence[int],
    boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
    *,
    seed: int = 0,
    min_face: int = 16,
    max_side: int = 640,
    negatives_per_image: int = 30,
    hard_negative_rounds: int = 3,
    mine_images: int = 400,
    mine_per_image: int = 20,
    C: float = 0.5,
) -> HogFaceClassifier:
    """Train v2 from labelled images (paths, PIL images or arrays; label 1 = contains a face).

    Face windows come from ``boxes`` (``[x, y, w, h]`` per face, in each image's own pixels); a
    labelled face image without boxes that is small (<= 64 px) is taken as one face crop (lfw-style),
    a large one without boxes is skipped (nobody knows where its face is, so it gives neither face
    nor background windows). Background windows come from face-free images and from the parts of
    face images away from their boxes, plus, for ``hard_negative_rounds`` rounds, the windows the
    current model scores highest on them (hard-negative mining, up to ``mine_per_image`` per image
    on ``mine_images`` images): the image score is a max over thousands of windows, so it is the
    worst background window that decides false alarms on fur and leaves, not the average one.
    """
    if len(images) != len(labels):
        raise ValidationError(f"{len(images)} images but {len(labels)} labels", field="labels")
    if boxes is not None and len(boxes) != len(images):
        raise ValidationError(f"{len(images)} images but {len(boxes)} box lists", field="boxes")
    for name, value, low in (
        ("hard_negative_rounds", hard_negative_rounds, 0),
        ("mine_images", mine_images, 1),
        ("mine_per_image", mine_per_image, 1),
        ("negatives_per_image", negatives_per_image, 1),
    ):
        if not (isinstance(value, int) and value >= low):
            raise ValidationError(f"{name} must be an int >= {low}, got {value!r}", field=name)
    rng = np.random.default_rng(seed)
    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    pool: list[tuple[np.ndarray, np.ndarray]] = []  # (gray, face boxes in its pixels) to mine
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        gray, scale = _as_gray(image, max_side)
        faces = np.zeros((0, 4))
        if int(label) == 1:
            bx = list(boxes[i]) if boxes is not None and boxes[i] else []
            if bx:
                faces = np.array([[v / scale for v in b] for b in bx], dtype=float).reshape(-1, 4)
                pos += _positives(gray, faces.tolist(), rng, copies=4)
            elif max(gray.shape) <= 64:
                pos += _positives(gray, [[0, 0, gray.shape[1], gray.shape[0]]], rng, copies=4)
                continue
            else:
                continue
        pool.append((gray, faces))
        neg += _random_negatives(gray, faces, rng, negatives_per_image, min_face)
    if len(pos) < 10 or len(neg) < 10:
        raise ValidationError(
            f"too little training data: {len(pos)} face windows and {len(neg)} background windows; "
            "give labelled face images with boxes (or small face crops) and face-free images",
            field="images",
        )
    X = np.vstack(pos + neg)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    weights, bias = _fit(X, y, seed, C)
    model = HogFaceClassifier(weights, bias, min_face=min_face, max_side=max_side)
    for _ in range(hard_negative_rounds):
        hard: list[np.ndarray] = []
        for j in rng.permutation(len(pool))[:mine_images]:
            hard += _hard_negatives(model, *pool[j], mine_per_image)
        if not hard:
            break
        X = np.vstack([X, *hard])
        y = np.r_[y, np.zeros(len(hard))]
        weights, bias = _fit(X, y, seed, C)
        model = HogFaceClassifier(weights, bias, min_face=min_face, max_side=max_side)
    return model
