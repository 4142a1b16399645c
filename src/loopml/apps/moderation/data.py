"""Starting data for the face screener, built offline from images that ship inside packages.

No downloads: scikit-image's wheel carries ``lfw_subset`` (100 face crops, then 100 non-faces, 25x25)
and sample photos, matplotlib carries ``grace_hopper.jpg``, scikit-learn carries ``china.jpg`` and
``flower.jpg``. Real photos with people: astronaut, grace_hopper, camera (the cameraman). The rest
has no person: chelsea (a cat) and horse are the animals, coffee/rocket/brick/... are backgrounds.

Most rows are COMPOSITES: an lfw face pasted (feathered ellipse, random brightness) into an animal or
background photo at a known position and size - large faces (48-140 px) and small ones (16-40 px), the
case whole-image classification misses. lfw non-face crops are pasted the same way into face-free
images, so a model cannot learn "pasted square = face". Each row gets a simulated upload week; the
last week is the held-out week and its composites use lfw faces (85-99) no other week uses.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from loopml.checks import check_choice, check_number
from loopml.errors import ValidationError

WEEKS = 6
HELD_OUT_FACES = range(85, 100)
TRAIN_FACES = range(0, 85)
KINDS = ("animal", "background", "face", "small_face")
UPLOAD_KINDS = ("animal", "face", "small_face", "corrupt")
#: share of each kind in the starting data
MIX = {"animal": 0.3, "background": 0.2, "face": 0.2, "small_face": 0.3}
COLUMNS = ["path", "label", "has_face", "face_size", "source", "week", "kind", "boxes"]


@dataclass(frozen=True)
class _Photo:
    name: str
    image: Image.Image
    faces: tuple[tuple[int, int, int, int], ...] = ()


def _skimage(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    img = Image.fromarray(arr)
    return img.convert("RGB")


@cache
def _photos() -> dict[str, list[_Photo]]:
    """The shipped photos by role; face boxes measured once with the Haar cascade (clear frontal faces)."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    grace = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    samples = load_sample_images()
    china, flower = (Image.fromarray(a).convert("RGB") for a in samples.images)
    return {
        "animal": [_Photo("chelsea", _skimage("chelsea")), _Photo("horse", _skimage("horse"))],
        "background": [
            _Photo(n, _skimage(n))
            for n in (
                "coffee",
                "rocket",
                "brick",
                "grass",
                "gravel",
                "coins",
                "moon",
                "clock",
                "page",
                "text",
            )
        ]
        + [_Photo("hubble", _skimage("hubble_deep_field")), _Photo("china", china), _Photo("flower", flower)],
        "face": [
            _Photo("astronaut", _skimage("astronaut"), ((178, 69, 92, 92),)),
            _Photo("grace_hopper", grace, ((149, 102, 229, 229),)),
            _Photo("camera", _skimage("camera")),  # the cameraman: a face, but in profile (no box)
        ],
    }


@cache
def _lfw() -> np.ndarray:
    import skimage.data

    return (skimage.data.lfw_subset() * 255).astype(np.uint8)  # (200, 25, 25): 100 faces, 100 non-faces


@cache
def _feather(size: int) -> Image.Image:
    """An elliptical alpha mask with a soft edge, so a pasted crop has no hard square border."""
    mask = Image.new("L", (size * 4, size * 4), 0)
    ImageDraw.Draw(mask).ellipse((size * 0.2, size * 0.1, size * 3.8, size * 3.9), fill=255)
    return mask.resize((size, size), Image.Resampling.LANCZOS).filter(
        ImageFilter.GaussianBlur(max(size / 25, 0.5))
    )


def _base(photo: _Photo, rng: np.random.Generator, *, crop: bool) -> tuple[Image.Image, list[list[float]]]:
    """A random view of a photo (crop, flip, 320-640 px long side, brightness) and its face boxes."""
    img = photo.image
    w, h = img.size
    boxes = [list(map(float, b)) for b in photo.faces]
    if crop:
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((x0, y0, x0 + cw, y0 + ch))
        boxes = [[x - x0, y - y0, bw, bh] for x, y, bw, bh in boxes]
        w, h = cw, ch
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes = [[w - x - bw, y, bw, bh] for x, y, bw, bh in boxes]
    scale = rng.uniform(320, 640) / max(w, h)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    boxes = [[v * scale for v in b] for b in boxes]
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.75, 1.25))
    return img, boxes


def _paste(img: Image.Image, crop: np.ndarray, size: int, rng: np.random.Generator) -> list[float]:
    tile = Image.fromarray(crop).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    tile = ImageEnhance.Brightness(tile).enhance(rng.uniform(0.7, 1.3))
    x = int(rng.integers(0, max(1, img.size[0] - size)))
    y = int(rng.integers(0, max(1, img.size[1] - size)))
    img.paste(tile, (x, y), _feather(size))
    return [float(x), float(y), float(size), float(size)]


def _make(kind: str, rng: np.random.Generator, faces: range) -> tuple[Image.Image, list[list[float]], str]:
    photos = _photos()
    lfw = _lfw()
    if kind == "face" and rng.random() < 0.25:
        photo = photos["face"][int(rng.integers(0, len(photos["face"])))]
        img, boxes = _base(photo, rng, crop=False)
        return img, boxes, f"photo:{photo.name}"
    host_role = "animal" if kind in ("animal", "small_face") or rng.random() < 0.5 else "background"
    pool = photos[host_role]
    photo = pool[int(rng.integers(0, len(pool)))]
    img, _ = _base(photo, rng, crop=True)
    if kind in ("animal", "background"):
        if rng.random() < 0.4:  # a pasted non-face crop: same artefacts as the composites, no face
            _paste(img, lfw[100 + int(rng.integers(0, 100))], int(rng.integers(16, 120)), rng)
            return img, [], f"composite:{photo.name}+lfw_nonface"
        return img, [], f"photo:{photo.name}"
    low, high = (16, 41) if kind == "small_face" else (48, 141)
    boxes = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        size = int(rng.integers(low, min(high, min(img.size) - 1)))
        boxes.append(_paste(img, lfw[faces[int(rng.integers(0, len(faces)))]], size, rng))
    return img, boxes, f"composite:{photo.name}+lfw_face"


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def build_starting_data(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    n: int = 600,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write ``n`` labelled JPEGs to ``out_dir`` (a new temporary directory when None) and describe them.

    Columns: ``path``, ``label`` (1 = a human face: prohibited), ``has_face``, ``face_size`` (largest
    face side in pixels, 0 without), ``source``, ``week`` (1..6; 6 is held out), ``kind`` (animal,
    background, face, small_face), ``boxes`` (JSON list of ``[x, y, w, h]``). Same seed, same data.
    """
    check_number(n, "n", low=12, high=100_000, integer=True)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="loopml-moderation-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {k: round(n * share) for k, share in MIX.items()}
    counts["animal"] += n - sum(counts.values())
    kinds = np.array([k for k, c in counts.items() for _ in range(c)])
    rng.shuffle(kinds)
    weeks = (np.arange(n) * WEEKS // n) + 1  # equal-sized weeks in upload order
    rows: list[dict[str, Any]] = []
    for i, (kind, week) in enumerate(zip(kinds.tolist(), weeks.tolist(), strict=True)):
        faces = HELD_OUT_FACES if week == WEEKS else TRAIN_FACES
        item_rng = np.random.default_rng([seed, i])
        if week == WEEKS and kind == "face":
            # held-out week: composites only, so no real photo seen in training comes back
            img, boxes, source = _make_composite_face(item_rng, faces)
        else:
            img, boxes, source = _make(kind, item_rng, faces)
        path = out / f"{i:05d}.jpg"
        path.write_bytes(_jpeg(img))
        has_face = kind in ("face", "small_face")
        rows.append(
            {
                "path": str(path),
                "label": int(has_face),
                "has_face": has_face,
                "face_size": round(max((max(b[2], b[3]) for b in boxes), default=0)),
                "source": source,
                "week": int(week),
                "kind": kind,
                "boxes": json.dumps([[round(v) for v in b] for b in boxes]),
            }
        )
        if progress is not None:
            progress(i + 1, n)
    return pd.DataFrame(rows, columns=COLUMNS)


def _make_composite_face(
    rng: np.random.Generator, faces: range
) -> tuple[Image.Image, list[list[float]], str]:
    while True:
        img, boxes, source = _make("face", rng, faces)
        if source.startswith("composite"):
            return img, boxes, source


def boxes_of(frame: pd.DataFrame) -> list[list[list[float]]]:
    """The ``boxes`` column decoded (what ``train_hog_classifier(boxes=...)`` takes)."""
    return [json.loads(b) if isinstance(b, str) else list(b) for b in frame["boxes"]]


def simulated_upload(seed: int, kind: str = "animal") -> bytes:
    """JPEG bytes of one simulated upload of ``kind`` (``animal``, ``face``, ``small_face``, ``corrupt``).

    Held-out lfw faces are used, so a model trained on the starting data has not seen them.
    ``corrupt`` is a truncated JPEG: what the worker must mark failed with a reason.
    """
    check_choice(kind, "kind", UPLOAD_KINDS)
    if not isinstance(seed, int | np.integer):
        raise ValidationError(f"seed must be an int, got {seed!r}", field="seed")
    rng = np.random.default_rng([int(seed), 7])
    if kind == "corrupt":
        img, _, _ = _make("animal", rng, HELD_OUT_FACES)
        data = _jpeg(img)
        return data[: len(data) // 3]
    if kind == "face":
        img, _, _ = _make_composite_face(rng, HELD_OUT_FACES)
    else:
        img, _, _ = _make(kind, rng, HELD_OUT_FACES)
    return _jpeg(img)
