"""``/v1/contents`` and ``/v1/timeline``: upload a photo, poll its status, read the published timeline.

Upload limits are enforced while the body streams in, never after reading it whole: a declared
``Content-Length`` above the limit is refused before a byte is read, and the bytes actually received
are counted (a client can lie about, or omit, the length) so the server stops at the limit. Parts
spool to temporary files, so memory stays bounded whatever the client sends.

Status codes: 202 accepted (the upload is durable and queued), 413 too large, 415 not a multipart
form or not an accepted image type (GIF, BMP, TIFF ... by content, whatever the name says), 422 a
missing or bad field or a corrupt/truncated image (the body names the field), 404 an unknown id.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from loopml import Loopml
from loopml.errors import NotFoundError, ValidationError
from loopml.serving.auth import ACTOR_HEADER, check_bearer, configured_token

router = APIRouter(tags=["moderation"])

#: Room for the text fields and multipart framing on top of the image limit.
FORM_OVERHEAD = 64 * 1024
TEXT_PART_MAX = 16 * 1024
ACCEPTED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
MEDIA_TYPES = {fmt: mime for mime, fmt in ACCEPTED_TYPES.items()}
#: Magic numbers of image types we recognise but do not accept: these get 415, not "corrupt".
OTHER_IMAGES = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
GENERIC_TYPES = ("", "application/octet-stream")
TIMELINE_MAX = 100


class PayloadTooLargeError(ValidationError):
    """The upload is bigger than the configured limit."""

    status_code = 413


class UnsupportedMediaTypeError(ValidationError):
    """The body is not a multipart form, or the file is an image type the service does not accept."""

    status_code = 415


def _lm(request: Request) -> Loopml:
    return request.app.state.lm


def _config(lm: Loopml) -> Any:
    from loopml.apps.moderation.config import load_config

    return load_config(lm)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the upload is larger than {limit:,} bytes ({limit / 1024 / 1024:.0f} MiB); send a smaller image",
        field="image",
    )


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit + FORM_OVERHEAD:
            raise _too_large(limit)
        yield chunk


async def read_form(request: Request, limit: int) -> Any:
    """Parse the multipart body with the byte cap applied while it streams."""
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("application/x-www-form-urlencoded"):  # a form without its file
        raise ValidationError(
            "image is required: send multipart/form-data with the photo as the file field 'image'",
            field="image",
        )
    if not ctype.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            f"send the upload as multipart/form-data (got {ctype or 'no content type'}), e.g. "
            "curl -F image=@cat.jpg -F title='My cat' ...",
            field="body",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise _too_large(limit)
    parser = MultiPartParser(
        request.headers, _capped(request, limit), max_files=1, max_fields=64, max_part_size=TEXT_PART_MAX
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ValidationError(f"the multipart body is malformed: {exc.message}", field="body") from None


def _sniff_other(data: bytes) -> str | None:
    for magic, name in OTHER_IMAGES.items():
        if data.startswith(magic):
            return name
    return None


def _text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise ValidationError(f"{name} must be a text field, not a file", field=name)
    return value


def _tags(form: Any) -> list[str]:
    out: list[str] = []
    for value in form.getlist("tags"):
        if isinstance(value, UploadFile):
            raise ValidationError("tags must be text, e.g. tags=cat,kitten", field="tags")
        out += [part.strip() for part in value.split(",") if part.strip()]
    return out


def _bool(value: str | None, field: str) -> bool:
    if value is None or value.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    raise ValidationError(f"{field} must be true or false; got {value!r}", field=field)


UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "title"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP"},
                        "title": {"type": "string", "maxLength": 200},
                        "description": {"type": "string", "maxLength": 5000},
                        "tags": {"type": "string", "description": "comma-separated, or repeat the field"},
                        "uploader": {
                            "type": "string",
                            "description": "who is notified (default X-Loopml-Actor)",
                        },
                        "blur_faces": {"type": "boolean", "description": "publish with faces blurred"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/v1/contents",
    status_code=202,
    summary="Upload a photo for screening (202: accepted, durable)",
    openapi_extra=UPLOAD_FORM,
)
async def post_content(request: Request) -> JSONResponse:
    from loopml.apps.moderation.uploads import upload

    lm = _lm(request)
    cfg = await run_in_threadpool(_config, lm)
    form = await read_form(request, cfg.max_upload_bytes)
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise ValidationError(
                "image is required: attach the photo as the form file field 'image'", field="image"
            )
        declared = (image.content_type or "").split(";")[0].strip().lower()
        if declared not in ACCEPTED_TYPES and declared not in GENERIC_TYPES:
            raise UnsupportedMediaTypeError(
                f"image has content type {declared!r}; send image/jpeg, image/png or image/webp",
                field="image",
            )
        data = await image.read(cfg.max_upload_bytes + 1)
        if len(data) > cfg.max_upload_bytes:
            raise _too_large(cfg.max_upload_bytes)
        other = _sniff_other(data)
        if other is not None:
            raise UnsupportedMediaTypeError(
                f"image is a {other} file; only JPEG, PNG and WebP are accepted", field="image"
            )
        uploader = _text(form, "uploader") or request.headers.get(ACTOR_HEADER) or ""
        request_obj = await run_in_threadpool(
            lambda: upload(
                lm,
                data,
                title=_text(form, "title") or "",
                description=_text(form, "description") or "",
                tags=_tags(form),
                uploader=uploader,
                blur_faces=_bool(_text(form, "blur_faces"), "blur_faces"),
                cfg=cfg,
            )
        )
    finally:
        await form.close()
    body = {
        "id": request_obj.id,
        "status": request_obj.status,
        "status_url": str(request.url_for("get_content", content_id=request_obj.id).path),
    }
    return JSONResponse(body, status_code=202)


def _content(lm: Loopml, content_id: str) -> Any:
    from loopml.apps.moderation.uploads import KIND

    try:
        req = lm.async_requests.get(content_id)
    except (NotFoundError, ValidationError):
        raise NotFoundError(f"content {content_id!r} does not exist", field="content_id") from None
    if req.kind != KIND:
        raise NotFoundError(f"content {content_id!r} does not exist", field="content_id")
    return req


def content_view(req: Any) -> dict[str, Any]:
    """What a client may see of an upload (no internal scores beyond the decision)."""
    result = req.result or {}
    meta = req.meta or {}
    return {
        "id": req.id,
        "status": req.status,
        "title": meta.get("title"),
        "description": meta.get("description", ""),
        "tags": req.tags,
        "uploader": meta.get("uploader"),
        "decision": result.get("decision"),
        "reason": result.get("reason") or req.error,
        "blurred": bool(result.get("published_digest")),
        "width": meta.get("width"),
        "height": meta.get("height"),
        "created_at": req.created_at.isoformat() if req.created_at else None,
        "decided_at": req.finished_at.isoformat() if req.finished_at else None,
        "image_url": f"/v1/contents/{req.id}/image",
    }


@router.get("/v1/contents/{content_id}", name="get_content", summary="An upload's status and decision")
async def get_content(request: Request, content_id: str) -> dict[str, Any]:
    req = await run_in_threadpool(_content, _lm(request), content_id)
    return content_view(req)


@router.get("/v1/contents/{content_id}/image", summary="The image: public once published, else token only")
async def get_image(request: Request, content_id: str) -> Response:
    lm = _lm(request)
    req = await run_in_threadpool(_content, lm, content_id)
    result = req.result or {}
    if req.status == "published":
        digest = result.get("published_digest") or req.input_digest
    else:  # held, rejected or still screening: only the operators (the API token) may look
        check_bearer(request.headers.get("authorization"), configured_token(request))
        digest = req.input_digest
    data = await run_in_threadpool(lm.ctx.artifacts.get_bytes, digest)
    fmt = "JPEG" if digest != req.input_digest else (req.meta or {}).get("format", "JPEG")
    return Response(
        data,
        media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=300"},
    )


def _cursor(value: str | None) -> tuple[datetime | None, str | None]:
    if not value:
        return None, None
    stamp, _, request_id = value.partition("|")
    try:
        moment = datetime.fromisoformat(stamp.replace(" ", "+"))
    except ValueError:
        raise ValidationError(
            f"before must be the 'next' cursor of the previous page or an ISO timestamp; got {value!r}",
            field="before",
        ) from None
    return moment, request_id or None


@router.get("/v1/timeline", summary="Published uploads, newest first (cursor paging with before=next)")
async def timeline(
    request: Request,
    tag: str | None = Query(None, description="only uploads with this tag"),
    before: str | None = Query(None, description="the previous page's `next` cursor (or an ISO timestamp)"),
    limit: int = Query(20, ge=1, le=TIMELINE_MAX, description=f"items per page (1-{TIMELINE_MAX})"),
) -> dict[str, Any]:
    from loopml.apps.moderation.uploads import KIND, PUBLISHED

    lm = _lm(request)
    moment, before_id = _cursor(before)
    if tag is not None:
        tag = tag.strip().lower()
    items = await run_in_threadpool(
        lambda: lm.async_requests.list(
            KIND, status=PUBLISHED, tag=tag or None, before=moment, before_id=before_id, limit=limit
        )
    )
    last = items[-1] if len(items) == limit else None
    return {
        "items": [content_view(item) for item in items],
        "next": f"{last.created_at.isoformat()}|{last.id}" if last is not None else None,
    }
