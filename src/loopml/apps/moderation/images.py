"""Untrusted image bytes in, safe pixels out: decoding with limits, perceptual hashes, face mosaic.

Uploads come from anyone, so decoding refuses before it allocates: the format is read from the
content (never the file name), the header's dimensions are checked against the pixel and side limits
before a single pixel is decoded (a 50 KB PNG can claim 100 000 x 100 000 pixels), PIL's own
decompression-bomb checks are errors, and truncated files fail instead of being padded with grey.
Every refusal is a ``ValidationError(field="image")`` that names the problem and the limit.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from loopml.errors import ValidationError

MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 10 * MiB
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 12_000
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP")


def _bad(message: str) -> ValidationError:
    return ValidationError(message, field="image")


def _open(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_side: int,
    formats: Sequence[str],
) -> Image.Image:
    """Open (header only) and check size, format and dimensions; nothing is decoded yet."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _bad(f"expected the image as bytes, got {type(data).__name__}; read the file in binary mode")
    size = len(data)
    if size == 0:
        raise _bad("the image is empty (0 bytes); upload a JPEG, PNG or WebP file")
    if size > max_bytes:
        raise _bad(
            f"the image is {size / MiB:.1f} MiB, over the {max_bytes / MiB:.1f} MiB limit; upload a smaller file"
        )
    allowed = [f.upper() for f in formats]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)), formats=None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad(
            f"the image is a decompression bomb ({exc}); at most {max_pixels:,} pixels are allowed"
        ) from None
    except UnidentifiedImageError:
        raise _bad(f"the file is not an image loopml can read; upload one of {', '.join(allowed)}") from None
    except Exception as exc:  # corrupt headers raise many classes (SyntaxError, struct.error, OSError)
        raise _bad(
            f"the image header is corrupt ({type(exc).__name__}: {exc}); upload the file again"
        ) from None
    fmt = (img.format or "").upper()
    if fmt not in allowed:
        raise _bad(
            f"{fmt or 'this'} images are not accepted (by content, whatever the name says); use {', '.join(allowed)}"
        )
    width, height = img.size
    if width < 1 or height < 1:
        raise _bad(f"the image header says {width}x{height} pixels; the file is corrupt")
    if max(width, height) > max_side:
        raise _bad(f"the image is {width}x{height} pixels; each side may be at most {max_side:,} pixels")
    if width * height > max_pixels:
        raise _bad(
            f"the image is {width}x{height} = {width * height:,} pixels, over the {max_pixels:,} pixel limit "
            "(decompression-bomb guard); scale it down"
        )
    return img


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: Sequence[str] = DEFAULT_FORMATS,
    draft_side: int | None = None,
) -> Image.Image:
    """Decode untrusted bytes to an RGB image (EXIF orientation applied), refusing anything unsafe.

    ``draft_side`` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8) when only a small image is
    needed, which is what makes screening cheap on CPU; the result is at least that large.
    """
    img = _open(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side, formats=formats)
    if draft_side is not None and img.format == "JPEG":
        scale = max(img.size) / max(draft_side, 1)
        if scale >= 2:
            img.draft("RGB", (math.ceil(img.size[0] / scale), math.ceil(img.size[1] / scale)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad(
            f"the image is a decompression bomb ({exc}); at most {max_pixels:,} pixels are allowed"
        ) from None
    except Exception as exc:  # truncated data: OSError; broken streams: SyntaxError, ValueError, zlib.error
        raise _bad(
            f"the image is truncated or corrupt ({type(exc).__name__}: {exc}); upload the file again"
        ) from None
    with contextlib.suppress(Exception):  # a broken EXIF block must not sink an otherwise good photo
        img = ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def image_info(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> dict[str, Any]:
    """``{"format", "width", "height"}`` from the header alone (same refusals as ``decode_image``)."""
    img = _open(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side, formats=formats)
    return {"format": img.format, "width": img.size[0], "height": img.size[1]}


def to_gray_array(img: Image.Image, max_side: int = 640) -> np.ndarray:
    """uint8 grayscale, scaled down (never up) so the longer side is at most ``max_side``.

    Detectors work on this: screening cost then depends on ``max_side``, not on the upload size.
    The scale back to the original is ``img.width / result.shape[1]``.
    """
    if max_side < 16:
        raise ValidationError(f"max_side must be at least 16 pixels, got {max_side}", field="max_side")
    gray = img.convert("L")
    if max(gray.size) > max_side:
        scale = max_side / max(gray.size)
        size = (max(1, round(gray.size[0] * scale)), max(1, round(gray.size[1] * scale)))
        gray = gray.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(gray, dtype=np.uint8)


def perceptual_hash(img: Image.Image) -> str:
    """64-bit pHash as 16 hex digits: survives re-encoding and resizing, so a rejected image that is
    uploaded again (re-saved, scaled) is still recognised.

    32x32 grayscale -> 2-D DCT-II -> the 8x8 lowest frequencies; each bit says whether a coefficient is
    above the median of the 63 AC coefficients. The DC bit (overall brightness) is always 0.
    """
    from scipy.fft import dct

    small = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    freq = dct(dct(small, axis=0, norm="ortho"), axis=1, norm="ortho")[:8, :8].ravel()
    ac = freq[1:]
    bits = np.concatenate([[False], ac > np.median(ac)])
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def _hash_int(value: str, name: str) -> int:
    if not isinstance(value, str) or len(value) != 16:
        raise ValidationError(f"{name} must be a 16-hex-digit perceptual hash, got {value!r}", field=name)
    try:
        return int(value, 16)
    except ValueError:
        raise ValidationError(f"{name} must be hexadecimal, got {value!r}", field=name) from None


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two perceptual hashes (0 = same picture; <= 8 is a near copy)."""
    return (_hash_int(a, "a") ^ _hash_int(b, "b")).bit_count()


def _check_box(box: Any, index: int) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (round(float(v)) for v in box)
    except (TypeError, ValueError):
        raise ValidationError(
            f"box {index} must be [x, y, w, h] numbers, got {box!r}", field="boxes"
        ) from None
    if w <= 0 or h <= 0:
        raise ValidationError(f"box {index} has width/height {w}x{h}; both must be positive", field="boxes")
    return x, y, w, h


def blur_regions(
    img: Image.Image, boxes: Iterable[Sequence[float]], *, strength: float = 0.12, grow: float = 0.2
) -> Image.Image:
    """A copy of ``img`` with each box pixelated (mosaic); the rest of the picture is untouched.

    Each box is enlarged by ``grow`` (20 %: detectors box the face tightly, hair and ears identify too).
    ``strength`` is the mosaic cell size as a share of the box's longer side: 0.12 leaves about
    8 cells across a face, which is no longer recognisable.
    """
    if not (isinstance(strength, int | float) and 0 < strength <= 1):
        raise ValidationError(
            f"strength must be in (0, 1], got {strength!r}; 0.12 is a good default", field="strength"
        )
    out = img.copy()
    width, height = out.size
    for i, box in enumerate(boxes):
        x, y, w, h = _check_box(box, i)
        dx, dy = w * grow / 2, h * grow / 2
        left, top = max(0, math.floor(x - dx)), max(0, math.floor(y - dy))
        right, bottom = min(width, math.ceil(x + w + dx)), min(height, math.ceil(y + h + dy))
        if right <= left or bottom <= top:
            continue
        region = out.crop((left, top, right, bottom))
        cell = max(2, round(strength * max(w, h)))
        small = (max(1, math.ceil(region.size[0] / cell)), max(1, math.ceil(region.size[1] / cell)))
        mosaic = region.resize(small, Image.Resampling.BOX).resize(region.size, Image.Resampling.NEAREST)
        out.paste(mosaic, (left, top))
    return out


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image (what the mosaic path stores)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
