"""Accept an upload: check the fields and the image, catch re-uploads of rejected content, and hand
it to the asynchronous-request service, which stores image, row and screening job in one commit.

Everything that can be refused is refused here, before anything is stored (the API answers 4xx and
nothing is left behind): fields, size, format by content, decompression bombs, truncated files. What
passes is accepted for good: the caller gets an id whose status it can poll.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from loopml.apps.moderation import images
from loopml.apps.moderation.config import ModerationConfig, load_config
from loopml.errors import ValidationError

KIND = "moderation"
JOB_KIND = "moderation.screen"
#: Statuses of a moderation request.
SCREENING, PUBLISHED, REVIEW, REJECTED, FAILED = "screening", "published", "review", "rejected", "failed"
STATUSES = (SCREENING, PUBLISHED, REVIEW, REJECTED, FAILED)
DECIDED = (PUBLISHED, REVIEW, REJECTED, FAILED)
FINAL = (PUBLISHED, REJECTED, FAILED)

TITLE_MAX = 200
DESCRIPTION_MAX = 5000
TAGS_MAX = 10
UPLOADER_MAX = 200
_TAG = re.compile(r"^[a-z0-9-]{1,32}$")


def check_fields(
    *, title: Any, description: Any, tags: Any, uploader: Any
) -> tuple[str, str, list[str], str]:
    """The text fields, normalised (trimmed; tags lower-cased, de-duplicated) or a ``ValidationError``."""
    if not isinstance(title, str) or not title.strip():
        raise ValidationError("title is required: 1-200 characters describing the photo", field="title")
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise ValidationError(f"title has {len(title)} characters; at most {TITLE_MAX}", field="title")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise ValidationError("description must be text", field="description")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise ValidationError(
            f"description has {len(description)} characters; at most {DESCRIPTION_MAX}", field="description"
        )
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValidationError("tags must be a list of words, e.g. ['cat', 'sleeping']", field="tags")
    clean: list[str] = []
    for tag in tags:
        value = tag.strip().lower() if isinstance(tag, str) else tag
        if not isinstance(value, str) or not _TAG.match(value):
            raise ValidationError(
                f"tag {tag!r} is not allowed: use 1-32 characters from a-z, 0-9 and '-' (e.g. 'tabby-cat')",
                field="tags",
            )
        if value not in clean:
            clean.append(value)
    if len(clean) > TAGS_MAX:
        raise ValidationError(f"{len(clean)} tags given; at most {TAGS_MAX}", field="tags")
    if not isinstance(uploader, str) or not uploader.strip() or len(uploader.strip()) > UPLOADER_MAX:
        raise ValidationError(
            f"uploader is required: the user id to notify (1-{UPLOADER_MAX} characters)", field="uploader"
        )
    return title, description, clean, uploader.strip()


def check_image(data: Any, cfg: ModerationConfig) -> tuple[Any, dict[str, Any]]:
    """Decode the upload under the configured limits; returns (RGB image, {format, width, height})."""
    if not isinstance(data, bytes | bytearray | memoryview) or not len(data):
        raise ValidationError("image is empty: attach a JPEG, PNG or WebP file", field="image")
    data = bytes(data)
    limits = {
        "max_bytes": cfg.max_upload_bytes,
        "max_pixels": cfg.max_pixels,
        "max_side": cfg.max_side,
        "formats": cfg.formats,
    }
    info = images.image_info(data, **limits)  # header only: refuses bombs before any pixel is decoded
    img = images.decode_image(data, draft_side=512, **limits)
    return img, info


def find_rejected_duplicate(lm: Any, fingerprint: str, cfg: ModerationConfig) -> tuple[str, int] | None:
    """The closest rejected upload within ``duplicate_distance`` bits of ``fingerprint``, if any.

    A linear scan of the rejected hashes (one indexed query, then 64-bit XORs): ~1 µs per rejected
    upload, so 100,000 rejected images cost ~0.1 s per upload; beyond that, bucket the hash.
    """
    best: tuple[str, int] | None = None
    for request_id, other in lm.async_requests.fingerprints(KIND, status=REJECTED):
        try:
            distance = images.hamming(fingerprint, other)
        except ValidationError:  # a malformed stored hash cannot match anything
            continue
        if distance <= cfg.duplicate_distance and (best is None or distance < best[1]):
            best = (request_id, distance)
    return best


def decision_notification(
    request_id: str, status: str, uploader: str, title: str, reason: str
) -> dict[str, Any]:
    """The uploader's notification for a decision; keyed by the request so it exists once, ever."""
    headline = {
        PUBLISHED: f"Your photo {title!r} is published",
        REVIEW: f"Your photo {title!r} is waiting for a moderator",
        REJECTED: f"Your photo {title!r} was not published",
        FAILED: f"Your photo {title!r} could not be processed",
    }[status]
    return {
        "key": f"moderation.decision:{request_id}",
        "topic": f"moderation.{status}",
        "recipient": uploader,
        "title": headline,
        "body": reason,
        "data": {"content_id": request_id, "status": status},
    }


def upload(
    lm: Any,
    data: bytes,
    *,
    title: str,
    description: str = "",
    tags: Sequence[str] = (),
    uploader: str,
    blur_faces: bool = False,
    cfg: ModerationConfig | None = None,
) -> Any:
    """Accept one photo for screening; returns the ``AsyncRequest`` (status ``screening``, or
    ``rejected`` at once when it is a re-upload of rejected content)."""
    cfg = load_config(lm) if cfg is None else cfg
    title, description, tags, uploader = check_fields(
        title=title, description=description, tags=tags, uploader=uploader
    )
    if not isinstance(blur_faces, bool):
        raise ValidationError("blur_faces must be true or false", field="blur_faces")
    if blur_faces and not cfg.allow_blurred:
        raise ValidationError(
            "blur_faces is switched off on this server (allow_blurred=false in the moderation config); "
            "upload without it, or ask the operator to enable the face mosaic",
            field="blur_faces",
        )
    img, info = check_image(data, cfg)
    fingerprint = images.perceptual_hash(img)
    meta = {
        "title": title,
        "description": description,
        "uploader": uploader,
        "blur_faces": blur_faces,
        "width": info["width"],
        "height": info["height"],
        "format": info["format"],
    }
    duplicate = find_rejected_duplicate(lm, fingerprint, cfg)
    if duplicate is not None:
        original, distance = duplicate
        request_id = uuid.uuid4().hex
        reason = f"duplicate of rejected content {original}"
        return lm.async_requests.submit(
            KIND,
            request_id=request_id,
            data=bytes(data),
            meta=meta,
            tags=tags,
            fingerprint=fingerprint,
            job_kind=None,
            status=REJECTED,
            final=True,
            actor="moderation.duplicates",
            result={"decision": "reject", "reason": reason, "duplicate_of": original, "distance": distance},
            notification=decision_notification(request_id, REJECTED, uploader, title, reason),
        )
    return lm.async_requests.submit(
        KIND,
        data=bytes(data),
        meta=meta,
        tags=tags,
        fingerprint=fingerprint,
        job_kind=JOB_KIND,
        queue=cfg.queue,
        status=SCREENING,
        max_attempts=cfg.max_attempts,
        actor=uploader,
    )
