"""Moderation uploads: every bad input is refused before anything is stored, accepted uploads are
durable with their screening job, re-uploads of rejected content are caught, the timeline pages."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from loopml import Loopml
from loopml.apps.moderation.config import ModerationConfig, save_config
from loopml.apps.moderation.uploads import upload
from loopml.errors import ValidationError
from loopml.serving.app import create_app

APP = ("loopml.apps.moderation.web",)


def photo(seed: int = 0, fmt: str = "JPEG", size: tuple[int, int] = (96, 64)) -> bytes:
    """A distinct little picture per seed (different perceptual hashes)."""
    img = Image.new("RGB", size, (40 * seed % 255, 90, 160))
    for i in range(6):
        x = (seed * 37 + i * 53) % size[0]
        y = (seed * 17 + i * 29) % size[1]
        img.paste(
            (255 - 30 * i, 20 * i + seed % 200, 255), (x, y, min(size[0], x + 25), min(size[1], y + 20))
        )
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims a huge image (the IHDR is rewritten with a valid CRC)."""
    data = bytearray(photo(fmt="PNG", size=(1, 1)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture
def client(lm_sqlite: Loopml) -> TestClient:
    return TestClient(create_app(lm_sqlite, apps=APP))


def post(client: TestClient, data: bytes | None, *, mime: str = "image/jpeg", **fields: object):
    files = {"image": ("photo.jpg", data, mime)} if data is not None else None
    form = {"title": "My cat", "uploader": "ann", "tags": "cat,cute"}
    form.update({k: v for k, v in fields.items() if v is not None})
    form = {k: v for k, v in form.items() if v != "<omit>"}
    return client.post("/v1/contents", files=files, data=form)


def test_upload_is_accepted_with_its_job(lm: Loopml) -> None:
    req = upload(lm, photo(1), title="  Tom  ", tags=["Cat", "cat", "sleepy-cat"], uploader="ann")
    assert (req.kind, req.status, req.tags) == ("moderation", "screening", ["cat", "sleepy-cat"])
    assert req.meta["title"] == "Tom" and req.meta["width"] == 96 and req.meta["format"] == "JPEG"
    assert len(req.fingerprint) == 16
    job = lm.jobs.get(req.job_id)
    assert (job.kind, job.queue, job.payload) == ("moderation.screen", "moderation", {"request_id": req.id})
    assert lm.async_requests.input_bytes(req.id) == photo(1)


def test_http_upload_status_and_image(client: TestClient) -> None:
    res = post(client, photo(2, "PNG"), mime="image/png", tags=None, description="hello")
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["status"] == "screening" and body["status_url"] == f"/v1/contents/{body['id']}"
    got = client.get(body["status_url"]).json()
    assert (got["title"], got["tags"], got["status"], got["decision"]) == (
        "My cat",
        ["cat", "cute"],
        "screening",
        None,
    )
    # repeated tags fields work too
    res = client.post(
        "/v1/contents",
        files={"image": ("a.webp", photo(3, "WEBP"), "image/webp")},
        data={"title": "t", "uploader": "bob", "tags": ["a", "b,c"]},
    )
    assert res.status_code == 202 and client.get(res.json()["status_url"]).json()["tags"] == ["a", "b", "c"]
    # not published: the image is not public when the server has a token
    client.app.state.api_token = "s3cret"
    assert client.get(f"/v1/contents/{body['id']}/image").status_code == 401
    img = client.get(f"/v1/contents/{body['id']}/image", headers={"Authorization": "Bearer s3cret"})
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert client.get("/v1/contents/" + "0" * 32).status_code == 404
    assert client.get("/v1/contents/nope/image").status_code == 404


@pytest.mark.parametrize(
    ("data", "fields", "mime", "status", "field"),
    [
        (b"hello, I am text", {}, "image/jpeg", 422, "image"),  # not an image
        (photo(4)[:300], {}, "image/jpeg", 422, "image"),  # truncated
        (png_bomb(), {}, "image/png", 422, "image"),  # decompression bomb (header only)
        (photo(5, "GIF"), {}, "image/gif", 415, "image"),  # declared gif
        (photo(5, "GIF"), {}, "image/jpeg", 415, "image"),  # a gif named jpeg: refused by content
        (photo(5, "BMP"), {}, "application/octet-stream", 415, "image"),
        (photo(6), {"title": "<omit>"}, "image/jpeg", 422, "title"),
        (photo(6), {"title": "   "}, "image/jpeg", 422, "title"),
        (photo(6), {"title": "x" * 201}, "image/jpeg", 422, "title"),
        (photo(6), {"description": "x" * 5001}, "image/jpeg", 422, "description"),
        (photo(6), {"tags": ",".join(f"t{i}" for i in range(11))}, "image/jpeg", 422, "tags"),
        (photo(6), {"tags": "bad tag!"}, "image/jpeg", 422, "tags"),
        (photo(6), {"uploader": "<omit>"}, "image/jpeg", 422, "uploader"),
        (photo(6), {"blur_faces": "maybe"}, "image/jpeg", 422, "blur_faces"),
        (photo(6), {"blur_faces": "true"}, "image/jpeg", 422, "blur_faces"),  # mosaic switched off
        (None, {}, "image/jpeg", 422, "image"),
        (b"", {}, "image/jpeg", 422, "image"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    client: TestClient, lm_sqlite: Loopml, data, fields, mime, status, field
) -> None:
    res = post(client, data, mime=mime, **fields)
    assert res.status_code == status, res.text
    assert res.json()["field"] == field
    assert lm_sqlite.async_requests.counts("moderation") == {}
    assert lm_sqlite.jobs.list(queue="moderation") == []


def test_oversized_uploads_get_413_without_being_read_whole(client: TestClient, lm_sqlite: Loopml) -> None:
    save_config(lm_sqlite, ModerationConfig(max_upload_bytes=20_000))
    big = photo(7, "PNG", size=(400, 400)) + b"\0" * 120_000
    res = post(client, big, mime="image/png")
    assert res.status_code == 413 and res.json()["error"] == "payload_too_large"

    # a lying Content-Length is not trusted: the streamed bytes are counted
    def chunks():
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(20):
            yield b"\0" * 10_000

    res = client.post(
        "/v1/contents", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert res.status_code == 413
    # between the image limit and limit + form overhead: counted exactly on the file part
    res = post(client, b"\xff\xd8" + b"\0" * 30_000)
    assert res.status_code == 413
    res = client.post("/v1/contents", json={"title": "x"})
    assert res.status_code == 415 and res.json()["field"] == "body"
    assert lm_sqlite.async_requests.counts("moderation") == {}


def test_reupload_of_rejected_content_is_rejected_at_once(lm: Loopml) -> None:
    pytest.importorskip("loopml.notify")
    first = upload(lm, photo(8), title="bad", uploader="eve")
    lm.async_requests.transition(first.id, expected="screening", status="rejected", final=True)
    # re-encoded and resized: same perceptual hash neighbourhood
    img = Image.open(io.BytesIO(photo(8))).resize((120, 80))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    again = upload(lm, buf.getvalue(), title="bad again", uploader="eve")
    assert (again.status, again.job_id, again.finished_at is not None) == ("rejected", None, True)
    assert again.result["duplicate_of"] == first.id and again.result["distance"] <= 6
    assert again.result["reason"] == f"duplicate of rejected content {first.id}"
    notes = lm.notify.notifications(recipient="eve")
    assert [n.key for n in notes] == [f"moderation.decision:{again.id}"]
    assert notes[0].topic == "moderation.rejected"
    other = upload(lm, photo(9), title="fine", uploader="eve")
    assert other.status == "screening"


def test_timeline_newest_first_with_tag_filter_and_paging(client: TestClient, lm_sqlite: Loopml) -> None:
    ids = []
    for i in range(7):
        tags = "cat" if i % 2 else "dog"
        res = post(client, photo(20 + i), tags=tags, title=f"p{i}")
        ids.append(res.json()["id"])
    for i, rid in enumerate(ids):
        if i != 3:  # one is still screening: not on the timeline
            lm_sqlite.async_requests.transition(
                rid, expected="screening", status="published", result={"decision": "publish"}, final=True
            )
    published = [rid for i, rid in enumerate(ids) if i != 3][::-1]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"before": cursor} if cursor else {})
        page = client.get("/v1/timeline", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == published
    cats = client.get("/v1/timeline", params={"tag": "CAT"}).json()["items"]
    assert [c["id"] for c in cats] == [rid for i, rid in enumerate(ids) if i % 2 and i != 3][::-1]
    assert all(c["status"] == "published" and c["decision"] == "publish" for c in cats)
    public = client.get(f"/v1/contents/{published[0]}/image")
    assert public.status_code == 200 and public.content == photo(26)
    assert client.get("/v1/timeline", params={"before": "garbage"}).json()["field"] == "before"
    assert client.get("/v1/timeline", params={"limit": 0}).status_code == 422


def test_python_entry_refuses_bad_input(lm_sqlite: Loopml) -> None:
    for kwargs, field in [
        ({"data": "text"}, "image"),
        ({"tags": "cat"}, "tags"),
        ({"uploader": ""}, "uploader"),
        ({"blur_faces": "yes"}, "blur_faces"),
    ]:
        args = {"data": photo(1), "title": "t", "uploader": "u"} | kwargs
        data = args.pop("data")
        with pytest.raises(ValidationError) as err:
            upload(lm_sqlite, data, **args)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        ModerationConfig(review_at=0.9, reject_at=0.5)
    assert err.value.field == "review_at"
