"""profiles/*.yaml: how to profile one service, validated like stack.yaml.

A recipe names the target (a stack service, a container, a command-line
pattern or a PID), the language, the profiler and its settings, so an
engineer types ``vots-ops profile agent`` instead of learning py-spy, pprof
and perf. Command-line flags override any field.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ops.errors import SpecError
from ops.profile.model import DEFAULT_PROFILER, Language, Profiler
from ops.profile.pprof import PprofKind
from ops.spec import load_file, validate
from ops.units import parse_duration_s, shown

MAX_DURATION_S = 3600.0


def parse_profile_duration(value: Any) -> float:
    """A sampling time in the one duration grammar (``ops.units``), up to 1h."""
    seconds = parse_duration_s(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"at most 1h (got {shown(value)})")
    return seconds


def _regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a regular expression (got {shown(value)})")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc} (got {shown(value)})") from None
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError(f"expected a base URL like http://127.0.0.1:6060 (got {shown(value)})")
    return value.rstrip("/")


Duration = Annotated[float, BeforeValidator(parse_profile_duration)]
Regex = Annotated[str, BeforeValidator(_regex)]
Url = Annotated[str, BeforeValidator(_url)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Model):
    """Where the process is: one of service / container / pid, optionally narrowed by match."""

    service: Name | None = None
    container: Name | None = None
    pid: int | None = Field(default=None, ge=1)
    match: Regex | None = None

    @model_validator(mode="after")
    def _one(self) -> TargetSpec:
        given = [k for k in ("service", "container", "pid") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of service, container or pid (got {', '.join(given)})")
        if not given and self.match is None:
            raise ValueError("give service, container, pid or match")
        return self


class Options(_Model):
    """py-spy's switches (Python only)."""

    native: bool = False
    gil: bool = False
    idle: bool = False
    subprocesses: bool = False
    blocking: bool = False


class PprofSpec(_Model):
    """A net/http/pprof (Go) or pprof-rs (Rust) endpoint."""

    url: Url
    kind: PprofKind = "cpu"


class Recipe(_Model):
    description: str = ""
    target: TargetSpec | None = None
    language: Language
    profiler: Profiler | None = None
    duration: Duration = 10.0
    rate: float = Field(default=100.0, gt=0, le=1000)
    options: Options = Options()
    pprof: PprofSpec | None = None

    @model_validator(mode="after")
    def _fits(self) -> Recipe:
        profiler = self.profiler or DEFAULT_PROFILER[self.language]
        if profiler == "py-spy" and self.language != "python":
            raise ValueError(f"py-spy profiles Python, not {self.language}")
        if profiler == "pprof" and self.pprof is None:
            raise ValueError("profiler pprof needs pprof: {url: http://HOST:PORT}")
        if profiler != "pprof" and self.target is None:
            raise ValueError(
                f"profiler {profiler} needs a target (service, container, pid or match)"
            )
        return self

    @property
    def chosen_profiler(self) -> Profiler:
        return self.profiler or DEFAULT_PROFILER[self.language]


def load_recipe(path: Path) -> Recipe:
    """Read and validate one recipe file."""
    data, lines = load_file(path)
    return validate(Recipe, data, lines, str(path))


def default_recipes() -> Path:
    """``profiles/`` here, else the recipes shipped in the wheel (``ops/_data``)."""
    local = Path("profiles")
    if local.is_dir():
        return local
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_data" / "profiles"
    return packaged if packaged.is_dir() else here.parent / "profiles"


def find_recipe(name: str, directory: Path) -> Path:
    """``agent`` -> ``profiles/agent.yaml``; an unknown name lists the known ones."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return Path(name)
    path = directory / f"{name}.yaml"
    if path.exists():
        return path
    known = sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    listing = ", ".join(known) if known else "none"
    raise SpecError(
        f"no recipe {shown(name)}; {hint}recipes in {directory}: {listing}", path=str(path)
    )


def list_recipes(directory: Path) -> list[tuple[str, Recipe]]:
    """Every recipe in ``directory``, by name, each read and validated."""
    if not directory.is_dir():
        raise SpecError("no recipe directory here", path=str(directory))
    return [(p.stem, load_recipe(p)) for p in sorted(directory.glob("*.yaml"))]
