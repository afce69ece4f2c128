"""scenarios.yaml -> validated ``Scenario`` objects, with k6-style SLO thresholds.

A threshold is one short expression per line of YAML, so a reader sees the
objective the way k6 users write it::

    slo:
      overall: ["p(95) < 300ms", "error_rate < 1%", "rps >= 40"]
      "POST /api/v1/analyze_code": ["p(99) < 2s"]

Every error names the file, the line and the key path (``ops.spec``). The user
classes a scenario names are checked against the locustfile's source with
``ast``: importing Locust here would monkey-patch this process with gevent.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ops.errors import SpecError
from ops.spec import LineMap, format_loc, load_yaml, read_text, validate
from ops.units import parse_duration_s, shown

MAX_USERS = 10_000
MAX_DURATION_S = 3 * 3600
DEFAULT_MAX_REQUESTS = 5_000_000

# ASCII digits only (``\d`` matches other scripts' digits too), and numbers of at
# most MAX_NUMBER_DIGITS: thousands of digits would read as inf and reach the JSON.
_THRESHOLD_RE = re.compile(
    r"^\s*(?P<metric>p\(\s*(?P<pq>[0-9]+(?:\.[0-9]+)?)\s*\)|p(?P<pn>[0-9]+(?:\.[0-9]+)?)|med|avg|mean|"
    r"max|min|error_rate|errors|rps)\s*(?P<op><=|>=|<|>)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*"
    r"(?P<unit>ms|s|%|/s)?\s*$"
)
#: Longest threshold expression, and longest number in one, that are read at all.
MAX_THRESHOLD_CHARS = 80
MAX_NUMBER_DIGITS = 24
_ENDPOINT_RE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|[A-Z]+) \S.*$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_CLASS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OVERALL = "overall"


#: Requests per second one run may be asked for: far beyond what Locust drives
#: from one machine, and a bound on what a typo can ask for.
MAX_RATE = 1_000_000.0


def parse_rate(value: Any) -> float:
    """``50``, ``50/s`` or ``600/m`` -> requests per second."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate like 50/s (got {shown(value)})")
    if isinstance(value, int) and abs(value) > MAX_RATE:  # float() of 5,000 digits overflows
        digits = round(abs(value).bit_length() * math.log10(2))  # str() of it may refuse
        raise ValueError(f"at most {MAX_RATE:g}/s (got a number of about {digits} digits)")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str) and (
        len(value) <= MAX_NUMBER_DIGITS + 8
        and (m := re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([sm])\s*", value))
    ):
        rate = float(m.group(1)) / (60.0 if m.group(2) == "m" else 1.0)
    else:
        raise ValueError(f"expected a rate like 50/s or 600/m (got {shown(value)})")
    if not rate > 0:  # nan too
        raise ValueError(f"must be more than zero (got {shown(value)})")
    if rate > MAX_RATE:  # inf too
        raise ValueError(f"at most {MAX_RATE:g}/s (got {shown(value)})")
    return rate


@dataclass(frozen=True)
class Threshold:
    """One objective: ``metric op value``; latency in ms, error rate as a fraction."""

    metric: str  # "p95", "p99.9", "avg", "max", "min", "error_rate", "rps"
    op: str
    value: float
    text: str

    @property
    def unit(self) -> str:
        return {"error_rate": "%", "rps": "/s"}.get(self.metric, "ms")

    def holds(self, actual: float) -> bool:
        return {
            "<": actual < self.value,
            "<=": actual <= self.value,
            ">": actual > self.value,
            ">=": actual >= self.value,
        }[self.op]

    def margin(self, actual: float) -> float:
        """How far inside (+) or outside (-) the objective the actual figure is, in its unit."""
        return self.value - actual if self.op in ("<", "<=") else actual - self.value


def parse_threshold(text: Any) -> Threshold:
    """``"p(95) < 300ms"`` -> a Threshold; a ValueError saying what is expected otherwise.

    Only ASCII digits are read, and a number of more than MAX_NUMBER_DIGITS
    digits (or an expression over MAX_THRESHOLD_CHARS) is refused before it is
    read: the value must stay a finite float all the way to result.json.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a threshold like 'p(95) < 300ms' (got {shown(text)})")
    if len(text) > MAX_THRESHOLD_CHARS:
        raise ValueError(
            f"a threshold is one short expression like 'p(95) < 300ms' (got {len(text)} "
            f"characters; at most {MAX_THRESHOLD_CHARS})"
        )
    m = _THRESHOLD_RE.fullmatch(text)
    if not m:
        raise ValueError(
            "expected a threshold like 'p(95) < 300ms', 'error_rate < 1%' or 'rps >= 50' "
            f"(got {shown(text)})"
        )
    numbers = [m.group(g) for g in ("pq", "pn", "value") if m.group(g) is not None]
    if any(len(n) > MAX_NUMBER_DIGITS for n in numbers) or not all(
        math.isfinite(float(n)) for n in numbers
    ):
        raise ValueError(
            f"a number in a threshold has at most {MAX_NUMBER_DIGITS} digits (got {shown(text)})"
        )
    raw, unit = m.group("metric"), m.group("unit")
    value = float(m.group("value"))
    q = m.group("pq") or m.group("pn")
    if q is not None:
        if not 0 < float(q) < 100 and float(q) != 100:
            raise ValueError(f"percentile must be in (0, 100] (got {shown(text)})")
        metric = "p" + format(float(q), "g")
    else:
        metric = {"med": "p50", "mean": "avg", "errors": "error_rate"}.get(raw, raw)
    if metric == "error_rate":
        if unit == "%":
            value /= 100.0
        elif unit is not None:
            raise ValueError(f"an error rate is a fraction or a percentage (got {shown(text)})")
        elif value >= 1:
            # "error_rate < 1" read as the fraction 1.0 would pass at any error
            # rate short of 100%: almost always a percentage without its sign.
            raise ValueError(
                f"an error rate without % is a fraction, so {shown(text)} allows up to "
                f"{value * 100:g}% errors; did you mean {m.group('value')}%?"
            )
        if value > 1:
            raise ValueError(f"an error rate above 100% makes no sense (got {shown(text)})")
    elif metric == "rps":
        if unit not in (None, "/s"):
            raise ValueError(
                f"a request rate is in requests per second, e.g. 'rps >= 50' (got {shown(text)})"
            )
    else:
        if unit in ("%", "/s"):
            raise ValueError(f"a latency is in ms or s, e.g. 'p(95) < 300ms' (got {shown(text)})")
        if unit == "s":
            value *= 1000.0
    return Threshold(metric, m.group("op"), value, " ".join(text.split()))


def _endpoint_key(value: Any) -> str:
    if not isinstance(value, str) or not (value == OVERALL or _ENDPOINT_RE.fullmatch(value)):
        raise ValueError(
            f"expected 'overall' or an endpoint as Locust names it, 'METHOD name' like "
            f"'GET /healthz' (got {shown(value)})"
        )
    return value


def _class_name(value: Any) -> str:
    if not isinstance(value, str) or not _CLASS_RE.fullmatch(value):
        raise ValueError(f"expected a Python class name like AgentUser (got {shown(value)})")
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/?#]+", value.rstrip("/")):
        raise ValueError(f"expected a base URL like https://127.0.0.1:8443 (got {shown(value)})")
    return value.rstrip("/")


def _locustfile(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"[A-Za-z0-9._/-]+\.py", value)
        or ".." in value
    ):
        raise ValueError(
            f"expected a .py file next to scenarios.yaml, like vots.py (got {shown(value)})"
        )
    return value


def parse_run_time(value: Any) -> float:
    """A run time in the one duration grammar (``ops.units``), 1s to 3h."""
    seconds = parse_duration_s(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(
            f"at most {MAX_DURATION_S // 3600}h (got {shown(value)}); split a soak into runs"
        )
    if seconds < 1:
        raise ValueError(f"at least 1s (got {shown(value)})")
    return seconds


RunTime = Annotated[float, BeforeValidator(parse_run_time)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
ThresholdT = Annotated[Threshold, BeforeValidator(parse_threshold)]
EndpointKey = Annotated[str, BeforeValidator(_endpoint_key)]
ClassName = Annotated[str, BeforeValidator(_class_name)]
Host = Annotated[str, BeforeValidator(_host)]
Locustfile = Annotated[str, BeforeValidator(_locustfile)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Scenario(_Model):
    """One load profile with its objectives."""

    description: str = ""
    locustfile: Locustfile
    user_classes: list[ClassName] = Field(default_factory=list)
    host: Host | None = None
    # Hosts that are not this machine this scenario may load (as --allow-host).
    allow_hosts: list[str] = Field(default_factory=list)
    users: int = Field(ge=1, le=MAX_USERS, strict=True)
    spawn_rate: float | None = Field(default=None, gt=0, le=MAX_USERS)
    duration: RunTime
    arrival_rate: Rate | None = None
    max_requests: int = Field(default=DEFAULT_MAX_REQUESTS, ge=1, le=100_000_000, strict=True)
    slo: dict[EndpointKey, list[ThresholdT]] = Field(default_factory=dict)

    @property
    def effective_spawn_rate(self) -> float:
        """All users within the first second when not given: Locust's ramp is then not part of the figures."""
        return self.spawn_rate if self.spawn_rate is not None else float(self.users)


class ScenarioFile(_Model):
    scenarios: dict[str, Scenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> ScenarioFile:
        for name in self.scenarios:
            if not _NAME_RE.fullmatch(name):
                raise ValueError(
                    f"scenario name {shown(name)}: use lowercase letters, digits, '-' and '_'"
                )
        return self


@dataclass(frozen=True)
class LoadedScenarios:
    """A scenarios.yaml, validated, with where it came from."""

    path: Path
    file: ScenarioFile
    lines: LineMap

    def get(self, name: str) -> Scenario:
        try:
            return self.file.scenarios[name]
        except KeyError:
            names = sorted(self.file.scenarios)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SpecError(
                f"no scenario named {shown(name)}; {hint}known: {', '.join(names)}",
                path=str(self.path),
                key="scenarios",
                line=self.lines.line(("scenarios",)),
            ) from None

    def locustfile(self, name: str) -> Path:
        return self.path.parent / self.get(name).locustfile


def user_classes_in(source: str) -> dict[str, int]:
    """Top-level classes in a locustfile, by name -> line, without importing it."""
    tree = ast.parse(source)
    return {node.name: node.lineno for node in tree.body if isinstance(node, ast.ClassDef)}


def _check_locustfiles(loaded: LoadedScenarios) -> None:
    path = str(loaded.path)
    for name, sc in loaded.file.scenarios.items():
        loc: tuple[str | int, ...] = ("scenarios", name, "locustfile")
        target = loaded.path.parent / sc.locustfile
        try:
            source = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(
                f"cannot read {target} ({exc.strerror or exc})",
                path=path,
                line=loaded.lines.line(loc),
                key=format_loc(loc),
            ) from None
        try:
            classes = user_classes_in(source)
        except SyntaxError as exc:
            raise SpecError(
                f"{target}:{exc.lineno}: {exc.msg}",
                path=path,
                line=loaded.lines.line(loc),
                key=format_loc(loc),
            ) from None
        for i, cls in enumerate(sc.user_classes):
            if cls not in classes:
                close = difflib.get_close_matches(cls, list(classes), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                at = ("scenarios", name, "user_classes", i)
                raise SpecError(
                    f"no class {shown(cls)} in {sc.locustfile}{hint}",
                    path=path,
                    line=loaded.lines.line(at),
                    key=format_loc(at),
                )


def parse_scenarios(text: str, path: str | Path) -> LoadedScenarios:
    """Validate scenarios.yaml text; ``path`` anchors locustfiles and error messages."""
    data, lines = load_yaml(text, str(path))
    file = validate(ScenarioFile, data, lines, str(path))
    loaded = LoadedScenarios(Path(path), file, lines)
    _check_locustfiles(loaded)
    return loaded


def load_scenarios(path: str | Path) -> LoadedScenarios:
    """Read and validate a scenarios.yaml from disk."""
    return parse_scenarios(read_text(Path(path)), path)
