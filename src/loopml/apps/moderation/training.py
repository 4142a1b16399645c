"""The data side of retraining: labelled images, the week split, v2 training and the held-out evaluation.

Why it is shaped like this:

- **Labels** come from two places: the starting data built offline from package images (its six
  simulated upload weeks are placed on the calendar just before the week of ``as_of``), and the
  operators' review decisions (``moderation_labels``, each row pointing at the upload's image).
- **Split by week, not at random.** The seeds evaluate a release on *last week's labelled uploads*:
  the held-out week is the latest complete week before ``as_of`` that has labels; every other week,
  including this week's fresh reviews, is training data. A random 25 % of the training rows (seeded,
  stratified) is the validation fold where thresholds are chosen, so the held-out week is only used
  to judge.
- **Thresholds for precision.** Wrongly blocking a user is the costlier error, so ``reject_at`` is
  the lowest cut that keeps precision at ``min_precision`` on validation (``choose_thresholds``),
  and the review band below it is narrowed until its expected volume fits what operators review
  in a week. The registered model is a ``CalibratedScreener``: its scores are mapped so that those
  cuts land on the config's ``reject_at``/``review_at``, so one screening policy fits every version
  (both arms of an A/B test included).
- **Flagged per week vs capacity** is measured on the held-out week and re-weighted to the real
  share of face photos (``face_share``; the labelled sample is about half faces), for the expected
  weekly upload volume (``weekly_uploads``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml import Loopml
from loopml.apps.moderation import data as starting
from loopml.apps.moderation.models import choose_thresholds, train_hog_classifier
from loopml.apps.moderation.policy import ScreeningPolicy
from loopml.apps.moderation.review import export_labels, read_labels, week_of
from loopml.data import Column, Contract
from loopml.errors import ValidationError

STARTING_DATASET = "moderation_starting"
EVAL_DATASET = "moderation_eval"
TRAIN_COLUMNS = ["image_path", "width", "height", "has_face", "week", "source", "kind", "boxes"]
INPUT_COLUMNS = ["image_path", "width", "height"]
MEMO_MAX = 20_000

STARTING_CONTRACT = Contract(
    columns=[
        Column("image_path", "str", description="local path of the JPEG (under <home>/moderation/starting)"),
        Column("width", "int", min=1),
        Column("height", "int", min=1),
        Column("has_face", "int", min=0, max=1, description="1 = a human face (prohibited)"),
        Column("face_size", "int", min=0, description="largest face side in pixels, 0 without a face"),
        Column("source", "str"),
        Column("kind", "str", allowed=list(starting.KINDS)),
        Column("sim_week", "int", min=1, max=starting.WEEKS, description="simulated upload week (1..6)"),
        Column("boxes", "str", description="JSON list of [x, y, w, h] face boxes"),
    ],
    unique_key=("image_path",),
)
EVAL_CONTRACT = Contract(
    columns=[
        Column("image_path", "str"),
        Column("width", "int", min=1),
        Column("height", "int", min=1),
        Column("has_face", "int", min=0, max=1),
    ],
)


@dataclass(frozen=True)
class Split:
    """Rows for training, for choosing thresholds (validation) and for judging (held-out week)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    held_out: pd.DataFrame
    held_out_week: str


def starting_dir(lm: Loopml, n: int, seed: int) -> Path:
    return Path(lm.settings.home) / "moderation" / "starting" / f"n{n}-s{seed}"


def starting_data(lm: Loopml, *, n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, Any]:
    """Build (once per home, n and seed) and ingest the starting data; returns (frame, version).

    The images are written under ``<home>/moderation/starting/n<n>-s<seed>`` so that models and the
    gate's evaluation rows can point at them; re-running finds them and ingests identical rows, which
    creates no new dataset version.
    """
    n = int(n)
    folder = starting_dir(lm, n, seed)
    index = folder / "index.json"
    if index.exists():
        frame = pd.read_json(index, orient="records")
    else:
        raw = starting.build_starting_data(folder, n=n, seed=seed)
        frame = _with_sizes(raw)
        tmp = index.with_suffix(".tmp")
        tmp.write_text(frame.to_json(orient="records"))
        tmp.replace(index)
    frame = frame.astype({"width": int, "height": int, "has_face": int, "face_size": int, "sim_week": int})
    version = lm.datasets.ingest(
        STARTING_DATASET, frame, contract=STARTING_CONTRACT, actor="moderation"
    ).version
    return frame, version


def _with_sizes(raw: pd.DataFrame) -> pd.DataFrame:
    from PIL import Image

    sizes = []
    for path in raw["path"]:
        with Image.open(path) as img:
            sizes.append(img.size)
    return pd.DataFrame(
        {
            "image_path": raw["path"].astype(str),
            "width": [w for w, _ in sizes],
            "height": [h for _, h in sizes],
            "has_face": raw["label"].astype(int),
            "face_size": raw["face_size"].astype(int),
            "source": raw["source"].astype(str),
            "kind": raw["kind"].astype(str),
            "sim_week": raw["week"].astype(int),
            "boxes": raw["boxes"].astype(str),
        }
    )


def calendar_week(sim_week: int, as_of: date) -> str:
    """Place simulated week ``k`` (1..6) on the calendar: week 6 is the week before ``as_of``'s."""
    monday = date.fromisoformat(week_of(as_of))
    return (monday - timedelta(weeks=starting.WEEKS + 1 - int(sim_week))).isoformat()


def labelled_frame(lm: Loopml, start: pd.DataFrame, as_of: date) -> tuple[pd.DataFrame, Any]:
    """Starting rows plus every review label, in one frame of ``TRAIN_COLUMNS``; and the labels version.

    Review labels are exported first (a decision whose export was interrupted is repaired here).
    A review row's image is the stored upload (``lm.async_requests.input_path``); it has no face
    boxes, so for v2 a rejected review contributes as a face image only when it is small (a crop),
    and an approved one always contributes background windows.
    """
    export_labels(lm)
    labels = read_labels(lm)
    rows = start.assign(week=[calendar_week(w, as_of) for w in start["sim_week"]])[TRAIN_COLUMNS]
    version = None
    if len(labels):
        version = lm.datasets.version("moderation_labels")
        reviewed = []
        for rec in labels.itertuples(index=False):
            path = lm.async_requests.input_path(rec.request_id)
            req = lm.async_requests.get(rec.request_id)
            meta = req.meta or {}
            reviewed.append(
                {
                    "image_path": str(path),
                    "width": int(meta.get("width") or 1),
                    "height": int(meta.get("height") or 1),
                    "has_face": int(rec.has_face),
                    "week": str(rec.week),
                    "source": "review",
                    "kind": "review",
                    "boxes": json.dumps((req.result or {}).get("boxes") or []) if rec.has_face else "[]",
                }
            )
        rows = pd.concat([rows, pd.DataFrame(reviewed, columns=TRAIN_COLUMNS)], ignore_index=True)
    # a stable order (paths of uploads are content digests), so the seeded split is reproducible
    rows = rows.sort_values(["week", "source", "image_path"], ignore_index=True)
    return rows, version


def split_by_week(
    frame: pd.DataFrame, as_of: date, *, validation_share: float = 0.25, seed: int = 0
) -> Split:
    """Hold out the latest complete week before ``as_of`` that has both classes; see the module doc."""
    if frame.empty:
        raise ValidationError(
            "no labelled rows: build the starting data or review some uploads", field="labels"
        )
    current = week_of(as_of)
    weeks = sorted(frame["week"].unique())
    candidates = [
        w for w in weeks if w < current and frame.loc[frame["week"] == w, "has_face"].nunique() == 2
    ]
    if not candidates:
        raise ValidationError(
            f"no complete week before {current} has both face and face-free labels to hold out; "
            f"weeks with labels: {', '.join(map(str, weeks))}",
            field="as_of",
        )
    held = candidates[-1]
    held_out = frame[frame["week"] == held].reset_index(drop=True)
    rest = frame[frame["week"] != held].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(rest), dtype=bool)
    for label in (0, 1):
        idx = np.nonzero(rest["has_face"].to_numpy() == label)[0]
        take = rng.choice(idx, size=round(len(idx) * validation_share), replace=False) if len(idx) else idx
        is_val[take] = True
    return Split(
        train=rest[~is_val].reset_index(drop=True),
        validation=rest[is_val].reset_index(drop=True),
        held_out=held_out,
        held_out_week=str(held),
    )


def train_v2(train: pd.DataFrame, *, seed: int = 0) -> Any:
    """``HogFaceClassifier`` on the training rows (face boxes from the data; review crops as they come)."""
    boxes = [json.loads(b) if isinstance(b, str) else list(b) for b in train["boxes"]]
    return train_hog_classifier(
        train["image_path"].tolist(), train["has_face"].astype(int).tolist(), boxes, seed=seed
    )


def face_scores(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """The model's face score per row (what the endpoint would answer)."""
    if frame.empty:
        return np.zeros(0)
    return np.asarray(model.predict_proba(frame[INPUT_COLUMNS])[:, 1], dtype=float)


class CalibratedScreener:
    """A face model whose score is mapped so that the app's thresholds mean the same for every version.

    The screening worker applies one ``ModerationConfig`` (``review_at``, ``reject_at``) to whatever
    version answers, including both arms of a shadow or an A/B test. A retrained model scores on its
    own scale, so its thresholds chosen on validation data (``raw_review_at``, ``raw_reject_at``)
    are mapped onto the config's with a monotone piecewise-linear map: ranks, and therefore
    precision and recall at every cut, are unchanged. ``predict`` answers 1 when the upload would be
    flagged (held for review or rejected), so the release gate's ``precision`` is the precision of
    what the screener holds back: the same "precision" the held-out evaluation reports.
    ``raw_reject_at=None`` means the model never rejects without a person (its best score maps just
    below ``reject_at``).
    """

    classes_ = np.array([0, 1])

    def __init__(
        self,
        model: Any,
        *,
        raw_review_at: float,
        raw_reject_at: float | None,
        review_at: float,
        reject_at: float,
    ) -> None:
        for name, value in (
            ("raw_review_at", raw_review_at),
            ("review_at", review_at),
            ("reject_at", reject_at),
        ):
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValidationError(f"{name} must be in [0, 1], got {value!r}", field=name)
        if raw_reject_at is not None and not (raw_review_at <= raw_reject_at <= 1.0):
            raise ValidationError(
                f"raw_reject_at must be in [raw_review_at, 1], got {raw_reject_at!r}", field="raw_reject_at"
            )
        if not review_at <= reject_at:
            raise ValidationError("review_at must be <= reject_at", field="review_at")
        if not callable(getattr(model, "predict_proba", None)):
            raise ValidationError("model must be a face model with predict_proba", field="model")
        self.model = model
        self.raw_review_at = float(raw_review_at)
        self.raw_reject_at = None if raw_reject_at is None else float(raw_reject_at)
        self.review_at = float(review_at)
        self.reject_at = float(reject_at)
        self.max_side = getattr(model, "max_side", 640)

    def _knots(self) -> tuple[list[float], list[float]]:
        eps = 1e-9
        lo = min(max(self.raw_review_at, eps), 1.0 - 2 * eps)
        if self.raw_reject_at is None:
            return [0.0, lo, 1.0], [0.0, self.review_at, max(self.review_at, self.reject_at - 1e-6)]
        hi = min(max(self.raw_reject_at, lo + eps), 1.0 - eps)
        return [0.0, lo, hi, 1.0], [0.0, self.review_at, self.reject_at, 1.0]

    def calibrate(self, raw: Any) -> np.ndarray:
        """Raw face scores -> scores on the config's scale (monotone, 0 -> 0, 1 -> 1)."""
        xs, ys = self._knots()
        return np.clip(np.interp(np.asarray(raw, dtype=float), xs, ys), 0.0, 1.0)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_memo", None)
        return state

    def _raw(self, frame: Any) -> np.ndarray:
        """Raw scores, remembered per (path, size, mtime) for the process's lifetime of this object:
        a release evaluation scores the same held-out images in ``evaluate`` and again in the gate,
        and an image file never changes under its path (uploads are content-addressed)."""
        memo: dict[tuple[str, int, int], float] = self.__dict__.setdefault("_memo", {})
        if not isinstance(frame, pd.DataFrame) or "image_path" not in frame.columns:
            return np.asarray(self.model.predict_proba(frame), dtype=float)[:, 1]
        keys = []
        for path in frame["image_path"].astype(str):
            try:
                st = os.stat(path)
                keys.append((path, st.st_size, st.st_mtime_ns))
            except OSError:
                keys.append(None)
        missing = [i for i, k in enumerate(keys) if k is None or k not in memo]
        out = np.array([memo.get(k, np.nan) if k is not None else np.nan for k in keys], dtype=float)
        if missing:
            fresh = np.asarray(self.model.predict_proba(frame.iloc[missing]), dtype=float)[:, 1]
            out[missing] = fresh
            if len(memo) > MEMO_MAX:
                memo.clear()
            for i, value in zip(missing, fresh, strict=True):
                if keys[i] is not None:
                    memo[keys[i]] = float(value)
        return out

    def predict_proba(self, frame: Any) -> np.ndarray:
        s = self.calibrate(self._raw(frame))
        return np.column_stack([1.0 - s, s])

    def predict(self, frame: Any) -> np.ndarray:
        """1 = flagged: not published straight away (calibrated score at or above ``review_at``)."""
        return (self.predict_proba(frame)[:, 1] >= self.review_at).astype(int)

    def detect(self, frame: Any) -> pd.DataFrame:
        out = self.model.detect(frame)
        out["face_score"] = self.calibrate(out["face_score"].to_numpy(dtype=float))
        return out

    def detect_image(self, img: Any) -> dict[str, Any]:
        out = dict(self.model.detect_image(img))
        out["face_score"] = float(self.calibrate([out["face_score"]])[0])
        return out


def review_volume(
    scores: np.ndarray,
    labels: np.ndarray,
    lo: float,
    hi: float,
    *,
    weekly_uploads: int,
    face_share: float,
) -> float:
    """Expected uploads per week whose score falls in ``[lo, hi)`` (held for review), with the real
    share of face photos ``face_share`` rather than the labelled sample's (about one half)."""
    band = (scores >= lo) & (scores < hi)
    pos, neg = labels == 1, labels == 0
    p_face = float(band[pos].mean()) if pos.any() else 0.0
    p_clean = float(band[neg].mean()) if neg.any() else 0.0
    return weekly_uploads * (face_share * p_face + (1.0 - face_share) * p_clean)


def fit_thresholds(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    min_precision: float,
    capacity_per_week: int,
    weekly_uploads: int,
    face_share: float,
    target_recall: float = 0.95,
    min_flag_precision: float | None = None,
    capacity_share: float = 1.0,
) -> dict[str, float | None]:
    """The candidate's operating point, chosen on validation rows only (never the held-out week).

    ``reject_at``: the lowest cut whose automatic rejections keep ``min_precision`` (None = never
    reject without a person). ``review_at``: the lowest cut (most faces caught, never lower than
    needed for ``target_recall``) such that the expected review volume fits ``capacity_share`` of
    the operators' weekly capacity and, with ``min_flag_precision`` (the champion's precision on
    the same validation rows), what is held back is at least that precise: the candidate must
    catch more faces without more wrongly held photos per catch. When no cut meets both, the cut
    with the best precision among those within capacity is taken (the gate then decides).
    """
    reject_at, review_at = choose_thresholds(
        scores.tolist(), labels.tolist(), min_precision=min_precision, target_recall=target_recall
    )
    top = math.inf if math.isinf(reject_at) else reject_at
    budget = capacity_per_week * capacity_share
    cuts = sorted({float(v) for v in scores if review_at <= v <= min(top, 1.0)})
    fits = [
        c
        for c in cuts
        if review_volume(scores, labels, c, top, weekly_uploads=weekly_uploads, face_share=face_share)
        <= budget
    ]
    chosen = None
    for cut in fits:  # lowest first: the most recall that keeps both promises
        if min_flag_precision is None or _precision_at(scores, labels, cut) >= min_flag_precision:
            chosen = cut
            break
    if chosen is None and fits:
        chosen = max(fits, key=lambda c: (_precision_at(scores, labels, c), -c))
    if chosen is None:  # nothing fits: hold back only the single most certain score
        chosen = cuts[-1] if cuts else review_at
    return {
        "reject_at": None if math.isinf(reject_at) else float(reject_at),
        "review_at": float(min(chosen, top, 1.0)),
    }


def _precision_at(scores: np.ndarray, labels: np.ndarray, cut: float) -> float:
    flagged = scores >= cut
    return float(labels[flagged].mean()) if flagged.any() else 0.0


def screening_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: dict[str, float | None],
    *,
    capacity_per_week: int,
    weekly_uploads: int,
    face_share: float,
) -> dict[str, Any]:
    """Accuracy, precision and recall of the *decisions* on one week, and flagged per week vs capacity.

    A decision counts as positive when the upload is not published straight away (review or
    reject). ``precision_reject`` is the precision of automatic rejections alone (the costly error:
    a user blocked with no person involved). ``flagged_per_week`` is the expected review volume
    (the operators' work) for ``weekly_uploads`` uploads of which ``face_share`` show a face.
    """
    reject_at = thresholds["reject_at"]
    top = math.inf if reject_at is None else float(reject_at)
    policy = ScreeningPolicy(reject_at=top, review_at=float(thresholds["review_at"]))
    decisions = np.array([policy.decide(float(s)) for s in scores])
    y = labels.astype(int)
    flagged = decisions != "publish"
    rejected = decisions == "reject"
    tp = int((flagged & (y == 1)).sum())
    n = len(y)
    faces = int((y == 1).sum())
    volume = review_volume(
        scores, y, float(thresholds["review_at"]), top, weekly_uploads=weekly_uploads, face_share=face_share
    )
    out = {
        "rows": n,
        "accuracy": float((flagged.astype(int) == y).mean()) if n else None,
        "precision": tp / int(flagged.sum()) if flagged.any() else None,
        "recall": tp / faces if faces else None,
        "precision_reject": float((y[rejected] == 1).mean()) if rejected.any() else None,
        "recall_reject": int((rejected & (y == 1)).sum()) / faces if faces else None,
        "review_rate": float((decisions == "review").mean()) if n else None,
        "reject_rate": float(rejected.mean()) if n else None,
        "flagged_per_week": round(volume),
        "capacity": int(capacity_per_week),
    }
    out["within_capacity"] = out["flagged_per_week"] <= out["capacity"]
    return out


def small_face_recall(
    scores: np.ndarray, frame: pd.DataFrame, thresholds: dict[str, float | None]
) -> float | None:
    """Recall (flagged) on faces smaller than 40 px: the case whole-image classifiers miss."""
    if "kind" not in frame.columns:
        return None
    mask = (frame["kind"] == "small_face").to_numpy()
    if not mask.any():
        return None
    return float((scores[mask] >= float(thresholds["review_at"])).mean())
