"""Settings from the environment (``RAG_*``, ``CHROMA_URL``) and flags, checked at start.

A bad value is one line naming the variable: ``RAG_BACKEND: one of lexical,
dense, hybrid``; nothing starts on settings that cannot work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from vots_service.run import build_settings

from vots_rag.errors import RagError

ENV_NAMES = {
    "index_dir": "RAG_INDEX_DIR",
    "root": "RAG_ROOT",
    "chroma_url": "CHROMA_URL",
    "backend": "RAG_BACKEND",
    "embeddings": "RAG_EMBEDDINGS",
    "embeddings_url": "RAG_EMBEDDINGS_URL",
    "embeddings_model": "RAG_EMBEDDINGS_MODEL",
    "embeddings_key_file": "RAG_EMBEDDINGS_KEY_FILE",
    "model_dir": "RAG_MODEL_DIR",
    "threads": "RAG_THREADS",
    "max_file_bytes": "RAG_MAX_FILE_BYTES",
    "max_files": "RAG_MAX_FILES",
    "max_body_bytes": "RAG_MAX_BODY_BYTES",
    "collection": "RAG_COLLECTION",
    "log_level": "RAG_LOG_LEVEL",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", frozen=True)

    index_dir: Path = Path(".vots-rag")
    root: Path = Path(".")
    chroma_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CHROMA_URL", "RAG_CHROMA_URL")
    )
    backend: Literal["lexical", "dense", "hybrid"] = "hybrid"
    embeddings: Literal["local", "openai"] = "local"
    embeddings_url: str | None = None
    embeddings_model: str | None = None
    embeddings_key_file: Path | None = None
    model_dir: Path | None = None
    threads: int | None = Field(default=None, ge=1, le=256)
    max_file_bytes: int = Field(default=1_000_000, ge=1024, le=100_000_000)
    max_files: int = Field(default=50_000, ge=1, le=10_000_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)
    collection: str = Field(
        default="vots-code", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,60}[A-Za-z0-9]$"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("chroma_url", "embeddings_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"expected http(s)://host[:port], got {value!r}")
        try:
            url.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}") from exc
        return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with flags (non-None ``overrides``) on top."""
    settings = build_settings(Settings, ENV_NAMES, overrides)
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """What can be checked before anything starts: directories, the endpoint's pieces."""
    try:
        _check(settings)
    except OSError as exc:
        raise RagError(
            f"{exc.filename or settings.root}: {exc.strerror}", field="RAG_ROOT"
        ) from exc


def _check(settings: Settings) -> None:
    if not settings.root.is_dir():
        raise RagError(f"RAG_ROOT: {settings.root} is not a directory", field="RAG_ROOT")
    parent = settings.index_dir if settings.index_dir.exists() else settings.index_dir.parent
    if settings.index_dir.exists() and not settings.index_dir.is_dir():
        raise RagError(
            f"RAG_INDEX_DIR: {settings.index_dir} is not a directory", field="RAG_INDEX_DIR"
        )
    if not parent.is_dir():
        raise RagError(f"RAG_INDEX_DIR: {parent} does not exist", field="RAG_INDEX_DIR")
    if not os.access(parent, os.W_OK):
        raise RagError(
            f"RAG_INDEX_DIR: {parent} is not writable by this user", field="RAG_INDEX_DIR"
        )
    if settings.embeddings == "openai" and settings.backend != "lexical":
        if not settings.embeddings_url or not settings.embeddings_model:
            raise RagError(
                "RAG_EMBEDDINGS=openai needs RAG_EMBEDDINGS_URL and RAG_EMBEDDINGS_MODEL",
                field="RAG_EMBEDDINGS_URL",
            )
        if settings.embeddings_key_file and not settings.embeddings_key_file.is_file():
            raise RagError(
                f"RAG_EMBEDDINGS_KEY_FILE: {settings.embeddings_key_file} is not a file",
                field="RAG_EMBEDDINGS_KEY_FILE",
            )
    if settings.model_dir is not None and not settings.model_dir.is_dir():
        raise RagError(
            f"RAG_MODEL_DIR: {settings.model_dir} is not a directory", field="RAG_MODEL_DIR"
        )


def make_embedder(settings: Settings) -> Any:
    """The embedding backend the settings name, loaded (the local model checks its sha256)."""
    if settings.backend == "lexical":
        return None
    if settings.embeddings == "openai":
        from vots_rag.model import RemoteEmbedder

        key = os.environ.get("RAG_EMBEDDINGS_KEY")
        if settings.embeddings_key_file is not None:
            key = settings.embeddings_key_file.read_text(encoding="utf-8").strip()
        assert settings.embeddings_url and settings.embeddings_model
        return RemoteEmbedder(settings.embeddings_url, settings.embeddings_model, api_key=key)
    from vots_rag.model import LocalEmbedder

    return LocalEmbedder(settings.model_dir, settings.threads)


def open_index(settings: Settings, embedder: Any = None) -> Any:
    """An :class:`~vots_rag.index.Index` on the settings (loading the model if not given)."""
    from vots_rag.index import Index

    if embedder is None:
        embedder = make_embedder(settings)
    return Index(
        settings.root,
        settings.index_dir,
        embedder=embedder,
        chroma_url=settings.chroma_url,
        collection=settings.collection,
        backend=settings.backend,
        max_file_bytes=settings.max_file_bytes,
        max_files=settings.max_files,
    )
