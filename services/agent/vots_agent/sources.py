"""Where submitted code comes from: the request's files, or a path under the code root.

Names are display names only (the analysers see files of our own naming), but
they are still checked: relative, no ``..``, no control characters, bounded.
A path is resolved under ``AGENT_CODE_ROOT`` with every symlink followed and
refused when it ends outside; a directory is read to at most ``max_files``
files, hidden directories and caches skipped.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path, PurePosixPath

from vots_agent.analysis import SourceFile, language_of
from vots_agent.errors import AgentError

MAX_NAME_CHARS = 255
SKIP_DIRS = {"__pycache__", "node_modules", ".git", ".venv", "venv", ".tox", ".mypy_cache"}
SOURCE_SUFFIXES = {".py", ".pyi"}


def check_name(name: str, field: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS:
        raise AgentError(f"{field}: 1 to {MAX_NAME_CHARS} characters", field=field)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise AgentError(f"{field}: control or unassigned characters in the name", field=field)
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise AgentError(f"{field}: a relative name without '..'", field=field)
    return str(p)


def check_content(content: str, field: str, max_bytes: int) -> None:
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise AgentError(f"{field}: not valid Unicode (a lone surrogate)", field=field) from None
    if size > max_bytes:
        raise AgentError(
            f"{field}: {size} bytes, over the limit of {max_bytes}", field=field, status=413
        )
    if "\x00" in content:
        raise AgentError(f"{field}: NUL bytes; send source text", field=field)


def from_root(root: Path | None, rel: str, max_files: int, max_file_bytes: int) -> list[SourceFile]:
    if root is None:
        raise AgentError(
            "path: AGENT_CODE_ROOT is not set, so paths cannot be analysed", field="path"
        )
    check_name(rel, "path")
    base = root.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise AgentError("path: outside the code root", field="path", status=403)
    if not target.exists():
        raise AgentError(
            f"path: {rel} does not exist under the code root", field="path", status=404
        )
    paths: list[Path] = []
    if target.is_file():
        paths = [target]
    else:
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames[:] = sorted(
                d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
            )
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.suffix in SOURCE_SUFFIXES and not p.is_symlink():
                    paths.append(p)
                    if len(paths) > max_files:
                        raise AgentError(
                            f"path: more than {max_files} source files under {rel}; name a smaller tree",
                            field="path",
                            status=413,
                        )
    out = []
    for p in paths:
        real = p.resolve()
        if base not in real.parents:
            raise AgentError(
                "path: a file in it leads outside the code root", field="path", status=403
            )
        try:
            if real.stat().st_size > max_file_bytes:
                raise AgentError(
                    f"path: {real.relative_to(base)} is over {max_file_bytes} bytes",
                    field="path",
                    status=413,
                )
            text = real.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise AgentError(
                f"path: {real.relative_to(base)}: {exc.strerror}", field="path", status=403
            ) from exc
        name = str(real.relative_to(base))
        out.append(SourceFile(name, text, language_of(name)))
    return out
