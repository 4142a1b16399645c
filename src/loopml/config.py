"""Settings: ``loopml.toml`` in the working directory, overridden by ``LOOPML_*`` environment variables.

Backends are chosen by URL so the same code runs embedded (SQLite, local files) and in production
(PostgreSQL, S3, Redis) without a code change.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from loopml.errors import ConfigError

CONFIG_FILE = "loopml.toml"
METADATA_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
ARTIFACT_SCHEMES = ("file", "s3", "gs", "gcs", "memory")
ONLINE_SCHEMES = ("sqlite", "redis", "rediss")
EXECUTORS = ("serial", "thread", "process", "ray", "ray:auto")


class Settings(BaseSettings):
    """Resolved configuration. Empty URLs mean "embedded, under ``home``"."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPML_", toml_file=CONFIG_FILE, extra="forbid", validate_default=True
    )

    home: Path = Field(default=Path(".loopml"), description="Directory for embedded state.")
    metadata_url: str = Field(default="", description="sqlite:///path.db or postgresql+psycopg://...")
    artifacts_url: str = Field(default="", description="file:///dir, s3://bucket/prefix")
    online_url: str = Field(default="", description="sqlite:///path.db or redis://host:6379/0")
    api_token: str | None = Field(default=None, description="Bearer token for mutating HTTP routes.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: str = "info"
    pipeline_modules: list[str] = Field(
        default_factory=list,
        description="Python modules that define pipelines (imported by `run`, `worker`, `up`), e.g. ['pipelines'].",
    )
    executor: str = Field(
        default="",
        description="Fan-out backend: '' (auto), serial, thread, process, ray, ray:auto or ray://host:port.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("metadata_url")
    @classmethod
    def _check_metadata_url(cls, value: str) -> str:
        return _check_url("metadata_url", value, METADATA_SCHEMES)

    @field_validator("artifacts_url")
    @classmethod
    def _check_artifacts_url(cls, value: str) -> str:
        return _check_url("artifacts_url", value, ARTIFACT_SCHEMES)

    @field_validator("online_url")
    @classmethod
    def _check_online_url(cls, value: str) -> str:
        return _check_url("online_url", value, ONLINE_SCHEMES)

    @field_validator("executor")
    @classmethod
    def _check_executor(cls, value: str) -> str:
        return _check_executor(value)

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_metadata_url(self) -> str:
        if self.metadata_url:
            url = self.metadata_url
            return (
                url.replace("postgresql://", "postgresql+psycopg://", 1)
                if url.startswith("postgresql://")
                else url
            )
        return f"sqlite:///{self.home_dir / 'loopml.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or (self.home_dir / "artifacts").as_uri()

    @property
    def resolved_online_url(self) -> str:
        return self.online_url or f"sqlite:///{self.home_dir / 'online.db'}"

    def describe(self) -> dict[str, Any]:
        """Settings as shown by ``loopml info`` (the token is masked)."""
        return {
            "home": str(self.home_dir),
            "metadata_url": _mask(self.resolved_metadata_url),
            "artifacts_url": self.resolved_artifacts_url,
            "online_url": _mask(self.resolved_online_url),
            "api_token": "set" if self.api_token else "not set (mutating routes are open)",
            "host": self.host,
            "port": self.port,
            "workers": self.workers,
            "executor": self.executor or "auto (process when there are several items and CPUs)",
        }


def _check_url(field: str, value: str, schemes: tuple[str, ...]) -> str:
    if not value:
        return value
    scheme = urlparse(value).scheme
    if scheme not in schemes:
        raise ValueError(
            f"{field}={value!r} has scheme {scheme or '(none)'!r}; use one of: "
            + ", ".join(f"{s}://..." for s in schemes)
        )
    return value


def _check_executor(value: str) -> str:
    value = value.strip()
    if not value or value in EXECUTORS:
        return value
    if value.startswith("ray://"):
        parsed = urlparse(value)
        try:
            port = parsed.port
        except ValueError:
            port = None
        if parsed.hostname and port:
            return value
        raise ValueError(f"executor={value!r} needs a host and a port, e.g. ray://head-node:10001")
    raise ValueError(
        f"executor={value!r} is not a known backend; use one of: '' (auto), "
        + ", ".join(EXECUTORS)
        + ", ray://host:port"
    )


def _mask(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's errors into one ``ConfigError`` that names each field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"- {loc} (env LOOPML_{loc.upper()}): {err['msg']}")
        source = f" (read from {CONFIG_FILE} and LOOPML_* variables in {os.getcwd()})"
        raise ConfigError("Invalid loopml settings" + source + ":\n" + "\n".join(lines)) from None
