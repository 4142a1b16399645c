"""Content-addressed, immutable blobs on any fsspec filesystem (local directory by default, S3 in production).

A blob's name is the sha256 of its bytes, so the same content is stored once, a reference can never
point at changed bytes, and every read re-hashes to detect corruption.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import fsspec

from loopml.errors import BackendUnavailableError, ConfigError, IntegrityError, NotFoundError

CHUNK = 1 << 20


class ArtifactStore:
    """Put bytes or files, get them back by digest (``sha256:<hex>``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            hint = " Install the extra: pip install 'loopml[s3]'." if url.startswith("s3") else ""
            raise ConfigError(f"artifacts_url {url!r} cannot be opened: {exc}.{hint}") from None
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols or "local" in protocols
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    # -- paths --------------------------------------------------------------------------------
    def _path(self, digest: str) -> str:
        hexd = _hex(digest)
        return f"{self.root}/sha256/{hexd[:2]}/{hexd[2:4]}/{hexd}"

    def uri(self, digest: str) -> str:
        """Where the blob lives, for people and for tools that read it directly (DuckDB, Ray)."""
        path = self._path(digest)
        return path if self.is_local else f"{self.fs.unstrip_protocol(path)}"

    # -- write --------------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            self._write(digest, io.BytesIO(data))
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        hasher = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                hasher.update(chunk)
        digest = "sha256:" + hasher.hexdigest()
        if not self.exists(digest):
            with open(path, "rb") as fh:
                self._write(digest, fh)
        return digest

    def _write(self, digest: str, source: IO[bytes]) -> None:
        target = self._path(digest)
        try:
            if self.is_local:
                # Write to a temp file in the same directory, then rename: readers never see half a blob.
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=Path(target).parent, prefix=".tmp-")
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter(lambda: source.read(CHUNK), b""):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            else:
                with self.fs.open(target, "wb") as out:
                    for chunk in iter(lambda: source.read(CHUNK), b""):
                        out.write(chunk)
        except OSError as exc:
            raise BackendUnavailableError(f"Cannot write artifact to {self.url}: {exc}") from None

    # -- read ---------------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    def get_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        try:
            with self.fs.open(self._path(digest), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise NotFoundError(
                f"Artifact {digest} is not in {self.url}; it was deleted or never stored."
            ) from None
        if verify:
            _verify(digest, hashlib.sha256(data).hexdigest(), self.url)
        return data

    def get_file(self, digest: str, dest: str | os.PathLike[str], *, verify: bool = True) -> Path:
        """Copy a blob to ``dest`` (a local path), verifying its hash on the way."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        try:
            with self.fs.open(self._path(digest), "rb") as src, open(dest, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    hasher.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            raise NotFoundError(
                f"Artifact {digest} is not in {self.url}; it was deleted or never stored."
            ) from None
        if verify:
            _verify(digest, hasher.hexdigest(), self.url)
        return dest

    def local_path(self, digest: str, *, verify: bool = True) -> Path:
        """A local file with the blob's bytes: the stored file itself when local, a cached copy otherwise."""
        if self.is_local:
            path = Path(self._path(digest))
            if not path.exists():
                raise NotFoundError(
                    f"Artifact {digest} is not in {self.url}; it was deleted or never stored."
                )
            if verify:
                self._verify_file(path, digest)
            return path
        cache = Path(tempfile.gettempdir()) / "loopml-artifacts" / _hex(digest)
        if not cache.exists():
            self.get_file(digest, cache, verify=verify)
        return cache

    def _verify_file(self, path: Path, digest: str) -> None:
        hasher = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                hasher.update(chunk)
        _verify(digest, hasher.hexdigest(), self.url)

    def check(self) -> str:
        try:
            probe = self.put_bytes(b"loopml health probe")
            self.get_bytes(probe)
        except Exception as exc:  # any backend error is reported, not raised, by a health check
            raise BackendUnavailableError(f"artifact store {self.url} not usable: {exc}") from None
        return "ok"

    def storage_options(self) -> dict[str, Any]:
        return dict(getattr(self.fs, "storage_options", {}) or {})


def _hex(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
        raise NotFoundError(
            f"{digest!r} is not an artifact digest; expected 'sha256:' followed by 64 hex digits."
        )
    return hexd


def _verify(digest: str, actual_hex: str, url: str) -> None:
    if _hex(digest) != actual_hex:
        raise IntegrityError(
            f"Artifact {digest} in {url} is corrupt (its bytes hash to sha256:{actual_hex}). "
            "Restore it from a backup or re-create the object that produced it."
        )
