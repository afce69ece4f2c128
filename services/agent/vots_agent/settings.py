"""Settings from the environment and flags, checked at start.

A bad value is one line naming the variable (``AGENT_WORKERS: Input should be
greater than or equal to 1``); nothing starts on settings that cannot work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from vots_service.run import build_settings

from vots_agent.errors import AgentError

ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "rag_url": "RAG_URL",
    "llm_base_url": "LLM_BASE_URL",
    "llm_model": "LLM_MODEL",
    "llm_api_key_file": "LLM_API_KEY_FILE",
    "llm_timeout_s": "LLM_TIMEOUT",
    "code_root": "AGENT_CODE_ROOT",
    "workers": "AGENT_WORKERS",
    "queue": "AGENT_QUEUE",
    "timeout_s": "AGENT_TIMEOUT",
    "rag_timeout_s": "AGENT_RAG_TIMEOUT",
    "body_timeout_s": "AGENT_BODY_TIMEOUT",
    "max_body_bytes": "AGENT_MAX_BODY_BYTES",
    "max_files": "AGENT_MAX_FILES",
    "max_file_bytes": "AGENT_MAX_FILE_BYTES",
    "cache_ttl_s": "AGENT_CACHE_TTL",
    "context_ttl_s": "AGENT_CONTEXT_TTL",
    "lru_bytes": "AGENT_LRU_BYTES",
    "log_level": "LOG_LEVEL",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )
    rag_url: str | None = Field(default=None, validation_alias=AliasChoices("RAG_URL", "rag_url"))
    llm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LLM_BASE_URL", "llm_base_url")
    )
    llm_model: str | None = Field(
        default=None, max_length=200, validation_alias=AliasChoices("LLM_MODEL", "llm_model")
    )
    llm_api_key_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("LLM_API_KEY_FILE", "llm_api_key_file")
    )
    llm_timeout_s: float = Field(
        default=30.0, gt=0, le=600, validation_alias=AliasChoices("LLM_TIMEOUT", "llm_timeout_s")
    )
    code_root: Path | None = Field(
        default=None, validation_alias=AliasChoices("AGENT_CODE_ROOT", "code_root")
    )
    workers: int | None = Field(
        default=None, ge=1, le=64, validation_alias=AliasChoices("AGENT_WORKERS", "workers")
    )
    queue: int = Field(
        default=16, ge=0, le=10_000, validation_alias=AliasChoices("AGENT_QUEUE", "queue")
    )
    timeout_s: float = Field(
        default=60.0, gt=0, le=3600, validation_alias=AliasChoices("AGENT_TIMEOUT", "timeout_s")
    )
    rag_timeout_s: float = Field(
        default=3.0,
        gt=0,
        le=60,
        validation_alias=AliasChoices("AGENT_RAG_TIMEOUT", "rag_timeout_s"),
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        validation_alias=AliasChoices("AGENT_BODY_TIMEOUT", "body_timeout_s"),
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        validation_alias=AliasChoices("AGENT_MAX_BODY_BYTES", "max_body_bytes"),
    )
    max_files: int = Field(
        default=50, ge=1, le=10_000, validation_alias=AliasChoices("AGENT_MAX_FILES", "max_files")
    )
    max_file_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        validation_alias=AliasChoices("AGENT_MAX_FILE_BYTES", "max_file_bytes"),
    )
    cache_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=1, validation_alias=AliasChoices("AGENT_CACHE_TTL", "cache_ttl_s")
    )
    context_ttl_s: int = Field(
        default=300, ge=1, validation_alias=AliasChoices("AGENT_CONTEXT_TTL", "context_ttl_s")
    )
    lru_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        validation_alias=AliasChoices("AGENT_LRU_BYTES", "lru_bytes"),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias=AliasChoices("LOG_LEVEL", "log_level")
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if not value:
            return None
        url = urlsplit(value)
        if url.scheme not in ("redis", "rediss", "unix") or (
            url.scheme != "unix" and not url.hostname
        ):
            raise ValueError(f"expected redis://host[:port][/db], got {_redact(value)!r}")
        return value

    @field_validator("rag_url", "llm_base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if not value:
            return None
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"expected http(s)://host[:port][/path], got {_redact(value)!r}")
        try:
            url.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in {_redact(value)!r}") from exc
        return value


def _redact(url: str) -> str:
    u = urlsplit(url)
    if u.password:
        return url.replace(u.password, "***")
    return url


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with flags (non-None ``overrides``) on top."""
    settings = build_settings(Settings, ENV_NAMES, overrides)
    check(settings)
    return settings


def check(settings: Settings) -> None:
    if settings.code_root is not None and not settings.code_root.is_dir():
        raise AgentError(
            f"AGENT_CODE_ROOT: {settings.code_root} is not a directory", field="AGENT_CODE_ROOT"
        )
    if bool(settings.llm_base_url) != bool(settings.llm_model):
        raise AgentError(
            "LLM_BASE_URL and LLM_MODEL go together: set both or neither", field="LLM_MODEL"
        )
    if settings.llm_api_key_file is not None and not settings.llm_api_key_file.is_file():
        raise AgentError(
            f"LLM_API_KEY_FILE: {settings.llm_api_key_file} is not a readable file",
            field="LLM_API_KEY_FILE",
        )


def llm_key(settings: Settings) -> str | None:
    """The model endpoint's key: from ``LLM_API_KEY_FILE`` (a secret file), else ``LLM_API_KEY``."""
    if settings.llm_api_key_file is not None:
        try:
            return settings.llm_api_key_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise AgentError(
                f"LLM_API_KEY_FILE: {settings.llm_api_key_file}: {exc.strerror}",
                field="LLM_API_KEY_FILE",
            ) from exc
    return os.environ.get("LLM_API_KEY") or None
