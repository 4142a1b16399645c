"""Decoding untrusted uploads, perceptual hashes, the face mosaic and the starting data."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loopml.apps.moderation import data as mdata
from loopml.apps.moderation.images import (
    blur_regions,
    decode_image,
    hamming,
    image_info,
    perceptual_hash,
    to_gray_array,
)
from loopml.errors import ValidationError


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut())


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decode_accepts_jpeg_png_webp_as_rgb(astronaut: Image.Image) -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        img = decode_image(_encode(astronaut, fmt))
        assert img.mode == "RGB" and img.size == (512, 512)
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    assert decode_image(_encode(rgba, "PNG")).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert image_info(_encode(astronaut, "WEBP")) == {"format": "WEBP", "width": 512, "height": 512}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"hello, I am a text file pretending to be a photo.jpg\n" * 3, "not an image"),
        (b"", "empty"),
    ],
)
def test_decode_refuses_non_images(payload: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        decode_image(payload)
    assert err.value.field == "image"


def test_decode_refuses_truncated_jpeg(astronaut: Image.Image) -> None:
    data = _encode(astronaut, "JPEG")
    with pytest.raises(ValidationError, match="truncated or corrupt") as err:
        decode_image(data[: len(data) // 2])
    assert err.value.field == "image"


def test_decode_refuses_bombs_before_decoding() -> None:
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 2000
    with pytest.raises(ValidationError, match=r"12,000 pixels|bomb") as err:
        decode_image(bomb)
    assert err.value.field == "image"
    with pytest.raises(ValidationError, match="pixel limit"):
        decode_image(_png_header_only(8000, 8000))  # sides fine, 64 M pixels too many
    with pytest.raises(ValidationError, match="pixel limit"):
        image_info(_png_header_only(8000, 8000))


def test_decode_refuses_gif_by_content_and_size_limit(astronaut: Image.Image) -> None:
    gif = _encode(astronaut, "GIF")
    with pytest.raises(ValidationError, match="GIF images are not accepted"):
        decode_image(gif)
    with pytest.raises(ValidationError, match="MiB limit"):
        decode_image(_encode(astronaut, "PNG"), max_bytes=1000)
    with pytest.raises(ValidationError, match="expected the image as bytes"):
        decode_image("astronaut.png")  # type: ignore[arg-type]


def test_phash_is_stable_under_reencode_and_resize_and_tells_images_apart(astronaut: Image.Image) -> None:
    import skimage.data

    h = perceptual_hash(astronaut)
    assert len(h) == 16 and int(h, 16) >= 0
    reencoded = decode_image(_encode(astronaut, "JPEG", quality=40))
    resized = astronaut.resize((200, 200))
    assert hamming(h, perceptual_hash(reencoded)) <= 4
    assert hamming(h, perceptual_hash(resized)) <= 4
    others = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket(), skimage.data.camera()]
    for arr in others:
        assert hamming(h, perceptual_hash(Image.fromarray(arr))) >= 16
    with pytest.raises(ValidationError) as err:
        hamming(h, "xyz")
    assert err.value.field == "b"


def test_gray_array_caps_the_long_side(astronaut: Image.Image) -> None:
    big = astronaut.resize((1600, 1200))
    gray = to_gray_array(big, max_side=640)
    assert gray.dtype == np.uint8 and gray.shape == (480, 640)
    assert to_gray_array(astronaut, max_side=640).shape == (512, 512)  # never scaled up


def test_mosaic_changes_only_the_boxes(astronaut: Image.Image) -> None:
    box = [178, 69, 92, 92]
    out = blur_regions(astronaut, [box], strength=0.12)
    a, b = np.asarray(astronaut).astype(int), np.asarray(out).astype(int)
    changed = np.any(a != b, axis=2)
    ys, xs = np.nonzero(changed)
    grow = 0.1 * 92 + 1
    assert xs.min() >= 178 - grow and xs.max() <= 178 + 92 + grow
    assert ys.min() >= 69 - grow and ys.max() <= 69 + 92 + grow
    assert changed[69:161, 178:270].mean() > 0.5  # the face itself is really altered
    assert np.array_equal(np.asarray(astronaut), a.astype(np.uint8))  # input untouched
    with pytest.raises(ValidationError) as err:
        blur_regions(astronaut, [[0, 0, -5, 10]])
    assert err.value.field == "boxes"
    with pytest.raises(ValidationError):
        blur_regions(astronaut, [box], strength=0)


def test_starting_data_is_offline_deterministic_and_labelled(tmp_path: Path) -> None:
    a = mdata.build_starting_data(tmp_path / "a", n=60, seed=3)
    b = mdata.build_starting_data(tmp_path / "b", n=60, seed=3)
    assert list(a.columns[:6]) == ["path", "label", "has_face", "face_size", "source", "week"]
    assert a.drop(columns="path").equals(b.drop(columns="path"))
    assert Path(a.path[0]).read_bytes() == Path(b.path[0]).read_bytes()
    assert set(a.week) == set(range(1, 7))
    assert set(a.kind) == {"animal", "background", "face", "small_face"}
    small = a[a.kind == "small_face"]
    assert small.face_size.between(16, 40).all() and (small.label == 1).all()
    assert (a[a.kind.isin(["animal", "background"])].label == 0).all()
    for row in a.itertuples():
        img = decode_image(Path(row.path).read_bytes())
        for x, y, w, h in mdata.boxes_of(a.loc[[row.Index]])[0]:
            assert x >= 0 and y >= 0 and x + w <= img.size[0] + 1 and y + h <= img.size[1] + 1


def test_simulated_uploads() -> None:
    for kind in ("animal", "face", "small_face"):
        data = mdata.simulated_upload(5, kind)
        assert decode_image(data).size[0] >= 100
        assert data == mdata.simulated_upload(5, kind)
    with pytest.raises(ValidationError, match="truncated"):
        decode_image(mdata.simulated_upload(5, "corrupt"))
    with pytest.raises(ValidationError) as err:
        mdata.simulated_upload(5, "cat")
    assert err.value.field == "kind"
