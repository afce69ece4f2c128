"""stack.yaml -> a validated ``Stack``: what should run on the VM.

Every value that later reaches nginx or YAML text is either a name matched by
a strict pattern here or free text that the renderer quotes; nothing else can
get through, so a service name can never smuggle in configuration.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ops.errors import SpecError
from ops.spec import LineMap, format_loc, load_yaml, read_text, show, validate

MiB = 1024**2
GiB = 1024**3
_UNITS = {"k": 1024, "m": MiB, "g": GiB, "t": 1024**4}

# --------------------------------------------------------------------------- scalars

_SIZE_RE = re.compile(r"^([0-9]{1,15}(?:\.[0-9]{1,9})?)([kKmMgGtT])$")
_CPU_RE = re.compile(r"^([0-9]{1,9})m$")
_DUR_RE = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_RATE_RE = re.compile(r"^([0-9]{1,9})r/(s|m)$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_ABS_RE = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
_REL_RE = re.compile(r"^(?!/)[A-Za-z0-9._/@+-]+$")
_IMAGE_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_HEADER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
# The largest figures a stack may give: far beyond any VM, small enough that
# every figure stays exact and fits the int64 fields Docker and the kernel use.
MAX_SIZE = 1024**5  # 1P
MAX_MILLICORES = 1024 * 1000  # 1024 CPUs

# How many entries a stack may list. Real stacks stay far below these; the
# caps keep a mistaken or generated file from costing anything to refuse.
MAX_SERVICES = 100
MAX_ROUTES = 100
MAX_HEADERS = 50
MAX_ENVIRONMENT = 200
MAX_VOLUMES = 50
MAX_LIST = 100  # depends_on, secrets, tmpfs, cap_add
MAX_ARGS = 256  # command and health command arguments
MAX_SECRETS = 100

# nginx reads its configuration in 4096-byte buffers: one parameter (a quoted
# header value with its quotes and escapes, a location path) must fit in 4095
# bytes, or `nginx -t` says "too long parameter". Found with nginx -t and kept
# honest by tests/stack/test_renderable.py.
NGINX_MAX_PARAMETER = 4095
MAX_PATH = NGINX_MAX_PARAMETER - 1  # a location path, unquoted
MAX_HEADER_VALUE = NGINX_MAX_PARAMETER - 2  # without the two quotes, escapes counted
MAX_TEXT = 32 * 1024  # one environment value or argument

CAPABILITIES = frozenset(
    [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
        "SYS_NICE",
        "SYS_PTRACE",
        "SYS_RESOURCE",
    ]
)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse_size(value: Any) -> int:
    """``512M``/``2G``/``1.5G`` -> bytes (binary units, like Docker)."""
    text = str(value) if isinstance(value, str) else None
    m = _SIZE_RE.fullmatch(text) if text else None
    if not m:
        raise ValueError(f"expected a size like 512M or 1.5G (got {show(value)})")
    n = int(Decimal(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"size must be greater than zero (got {show(value)})")
    if n > MAX_SIZE:
        raise ValueError(f"size is larger than 1024T (got {show(value)})")
    return n


def parse_cpus(value: Any, allow_zero: bool = False) -> int:
    """CPUs as a number (``0.5``) or millicores (``500m``) -> millicores."""
    if isinstance(value, str) and (m := _CPU_RE.fullmatch(value)):
        milli = int(m.group(1))
    elif _is_num(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected CPUs like 0.5 or 500m (got {show(value)})")
        if isinstance(value, int) and abs(value) > MAX_MILLICORES:
            raise ValueError(f"more than {MAX_MILLICORES // 1000} CPUs (got {show(value)})")
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"expected CPUs like 0.5 or 500m (got {show(value)})") from None
        if not d.is_finite():
            raise ValueError(f"expected CPUs like 0.5 or 500m (got {show(value)})")
        if d * 1000 != int(d * 1000):
            raise ValueError(f"CPUs have at most 3 decimals (got {show(value)})")
        milli = int(d * 1000)
    else:
        raise ValueError(f"expected CPUs like 0.5 or 500m (got {show(value)})")
    if milli < 0 or (milli == 0 and not allow_zero):
        raise ValueError(f"CPUs must be greater than zero (got {show(value)})")
    if milli > MAX_MILLICORES:
        raise ValueError(f"more than {MAX_MILLICORES // 1000} CPUs (got {show(value)})")
    return milli


def parse_reserve_cpus(value: Any) -> int:
    return parse_cpus(value, allow_zero=True)


def parse_reserve_size(value: Any) -> int:
    if value in (0, "0"):
        return 0
    return parse_size(value)


def _auto(parse: Any, example: str) -> Any:
    def check(value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f"expected 'auto' or {example} (got {show(value)})") from None

    return BeforeValidator(check)


def parse_duration(value: Any) -> str:
    """A duration in the one grammar (``ops.units.parse_duration_s``), kept as text
    that nginx, Prometheus and Compose all read: as written when it is one whole
    unit (``5s``, ``15d``), else in canonical form (``8`` -> ``8s``, ``1.5h`` -> ``1h30m``)."""
    from ops.units import format_duration_spec, parse_duration_s

    seconds = parse_duration_s(value)
    text = value.strip() if isinstance(value, str) else ""
    if _DUR_RE.fullmatch(text):
        return text
    if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
        raise ValueError(f"expected whole milliseconds or more, like 500ms (got {value!r})")
    return format_duration_spec(seconds)


def parse_seconds(value: Any) -> str:
    """A duration nginx accepts where it wants whole seconds (proxy_cache_valid)."""
    text = parse_duration(value)
    if text.endswith("ms"):
        raise ValueError(f"expected whole seconds or more, like 5s or 1m (got {text!r})")
    return text


def duration_seconds(value: str) -> float:
    from ops.units import parse_duration_s

    return parse_duration_s(value)


# Words YAML 1.1 reads as booleans or null; a name must never be one of them.
_YAML_WORDS = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(
            f"expected a lowercase name like 'agent' ([a-z][a-z0-9_-]*) (got {show(value)})"
        )
    if value in _YAML_WORDS:
        raise ValueError(f"{show(value)} reads as a boolean or null in YAML; choose another name")
    return value


def _ipv4(value: Any) -> str:
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(value if isinstance(value, str) else ""))
    except ValueError:
        raise ValueError(f"expected an IPv4 address like 127.0.0.1 (got {show(value)})") from None


def _pattern(regex: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"expected {what} (got {show(value)})")
        return value

    return BeforeValidator(check)


def _rate(value: Any) -> str:
    if not isinstance(value, str) or not (m := _RATE_RE.fullmatch(value)) or int(m.group(1)) == 0:
        raise ValueError(f"expected a rate like 20r/s or 300r/m (got {show(value)})")
    return value


def _cap(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in CAPABILITIES:
        raise ValueError(
            f"unknown capability {show(value)}; one of {', '.join(sorted(CAPABILITIES))}"
        )
    return value.upper()


# What every YAML reader accepts (YAML 1.1 "printable": PyYAML's Reader, libyaml,
# Go's yaml.v3). Anything else makes the rendered compose file unreadable.
_YAML_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
# Line breaks in YAML 1.1 besides CR/LF: written raw, a reader folds them into
# a space or a newline, so the value that runs is not the value given.
_YAML_BREAKS = {"\x85": "NEL", "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}


def _char_problem(c: str) -> str:
    code = f"U+{ord(c):04X}"
    if c in _YAML_BREAKS:
        return f"{code} ({_YAML_BREAKS[c]}) is a line break in YAML and would not survive"
    if ord(c) < 32 or ord(c) == 127:
        return f"control characters (newlines, tabs, ...) are not allowed (found {code})"
    if 0x80 <= ord(c) <= 0x9F:
        return f"control character {code} is not allowed (YAML cannot hold it)"
    if 0xD800 <= ord(c) <= 0xDFFF:
        return f"lone surrogate {code} is not Unicode text"
    return f"noncharacter {code} is not allowed (YAML cannot hold it)"


def _free_text(value: Any) -> str:
    """Free text may hold almost anything that a YAML reader reads back unchanged.

    Numbers and booleans are refused: YAML has already turned ``0755`` into 493
    and ``12:30`` into 750, so the text the user wrote is gone. Quote it.
    Control characters (C0, DEL, C1), YAML's own line breaks (NEL, LS, PS),
    lone surrogates and the noncharacters U+FFFE/U+FFFF are refused: the
    renderer writes the text inside a quoted YAML scalar, and each of these
    either breaks the file for every YAML reader or changes on the way.
    """
    if not isinstance(value, str):
        raise ValueError(f'expected a string; quote it, e.g. "{value}" (YAML read {show(value)})')
    if len(value) > MAX_TEXT:
        raise ValueError(f"a value of {len(value)} characters (at most {MAX_TEXT})")
    for c in value:
        if c in _YAML_BREAKS or ord(c) < 32 or ord(c) == 127 or _YAML_UNPRINTABLE.match(c):
            raise ValueError(_char_problem(c))
    return value


def _header_value(raw: Any) -> str:
    """An HTTP header value nginx can hold: visible ASCII and spaces, one parameter long."""
    value = _free_text(raw)
    if "$" in value:
        raise ValueError("'$' is not allowed in a header value (nginx would expand it)")
    for c in value:
        if not " " <= c <= "~":
            name = unicodedata.name(c, "")
            raise ValueError(
                f"header values are ASCII text; U+{ord(c):04X}{f' ({name})' if name else ''} is not"
            )
    quoted = len(value) + value.count('"') + value.count("\\")
    if quoted > MAX_HEADER_VALUE:
        raise ValueError(
            f"header value is {quoted} bytes as nginx reads it (quotes escaped); "
            f"nginx takes at most {MAX_HEADER_VALUE}"
        )
    return value


def _url_path(value: Any) -> str:
    if not isinstance(value, str) or not _PATH_RE.fullmatch(value):
        raise ValueError(
            f"expected a URL path like /api/v1/ (letters, digits, ._~/-) (got {show(value)})"
        )
    if len(value) > MAX_PATH:
        raise ValueError(f"path is {len(value)} characters; nginx takes at most {MAX_PATH}")
    return value


Size = Annotated[int, BeforeValidator(parse_size)]
Cpus = Annotated[int, BeforeValidator(parse_cpus)]


def _short_duration(value: Any) -> Any:
    """Runs before parse_duration: a duration of thousands of digits is a mistake, and
    durations reach nginx and Prometheus, which take 9 digits at most."""
    if isinstance(value, str) and len(value) > 11:
        raise ValueError(f"expected a duration like 5s, 1m or 500ms (got {show(value)})")
    return value


# BeforeValidators run last-listed first: the length check guards parse_duration.
Duration = Annotated[str, BeforeValidator(parse_duration), BeforeValidator(_short_duration)]
Rate = Annotated[str, BeforeValidator(_rate)]
Name = Annotated[str, BeforeValidator(_name)]
Seconds = Annotated[str, BeforeValidator(parse_seconds), BeforeValidator(_short_duration)]
UrlPath = Annotated[str, BeforeValidator(_url_path)]
Hostname = Annotated[str, _pattern(_HOST_RE, "a host name like vots.example.com")]
AbsPath = Annotated[str, _pattern(_ABS_RE, "an absolute path like /etc/ssl/vots/key.pem")]
RelPath = Annotated[str, _pattern(_REL_RE, "a relative path like services/agent")]
Image = Annotated[str, _pattern(_IMAGE_RE, "an image reference like vots/agent:1.2")]
EnvName = Annotated[str, _pattern(_ENV_RE, "an environment variable name like LOG_LEVEL")]
HeaderName = Annotated[str, _pattern(_HEADER_RE, "a header name like X-Frame-Options")]
Cap = Annotated[str, BeforeValidator(_cap)]
FreeText = Annotated[str, BeforeValidator(_free_text)]
HeaderValue = Annotated[str, BeforeValidator(_header_value)]
IPv4 = Annotated[str, BeforeValidator(_ipv4)]
Port = Annotated[int, Field(ge=1, le=65535)]
Language = Literal["python", "go", "rust", "node", "datastore", "static"]


def _argv(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of arguments, e.g. [redis-cli, ping]")
    if len(value) > MAX_ARGS:
        raise ValueError(f"{len(value)} arguments (at most {MAX_ARGS})")
    return [_free_text(v) for v in value]


Argv = Annotated[list[str], BeforeValidator(_argv)]

# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    # strict: `replicas: true` or `immutable: "yes"` are mistakes, not 1 and True.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CpuRange(_Model):
    min: Cpus | None = None
    max: Cpus | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CpuRange:
        for value in (self.min, self.max):
            if value is not None and value < 10:
                raise ValueError(
                    "CPU bounds must be at least 0.01 (10m), the smallest limit Docker applies"
                )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


class MemoryRange(_Model):
    min: Size | None = None
    max: Size | None = None

    @model_validator(mode="after")
    def _ordered(self) -> MemoryRange:
        if self.min is not None and self.min < 6 * MiB:
            raise ValueError("min must be at least 6M (Docker's smallest memory limit)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


class Resources(_Model):
    """Per-replica bounds; the planner picks values inside them."""

    cpu_weight: int = Field(1, ge=1, le=1000)
    memory_weight: int | None = Field(None, ge=1, le=1000)
    cpu: CpuRange = CpuRange()
    memory: MemoryRange = MemoryRange()
    pids: int | None = Field(None, ge=16, le=4_194_304)


class Route(_Model):
    path: UrlPath
    rate_limit: Rate | None = None
    burst: int | None = Field(None, ge=0, le=100_000)
    cache: Seconds | None = None
    immutable: bool = False
    max_body: Size | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Route:
        if self.burst is not None and self.rate_limit is None:
            raise ValueError("'burst' needs a 'rate_limit'")
        if self.cache is not None and self.immutable:
            raise ValueError("give 'cache' (microcache) or 'immutable' (hashed assets), not both")
        return self


class Health(_Model):
    path: UrlPath | None = None
    command: Argv | None = None
    interval: Duration = "15s"
    timeout: Duration = "5s"
    retries: int = Field(3, ge=1, le=100)
    start_period: Duration = "20s"

    @model_validator(mode="after")
    def _one(self) -> Health:
        if (self.path is None) == (self.command is None):
            raise ValueError("give exactly one of 'path' (HTTP check) or 'command'")
        return self


def _health(value: Any) -> Any:
    if isinstance(value, str):
        return {"path": value}
    if isinstance(value, list):
        return {"command": value}
    return value


class Service(_Model):
    image: Image | None = None
    build: RelPath | None = None
    language: Language = "python"
    port: Port | None = None
    replicas: int = Field(1, ge=1, le=64)
    internal: bool | None = None
    resources: Resources = Resources()
    health: Annotated[Health | None, BeforeValidator(_health)] = None
    metrics: UrlPath | None = None
    routes: Annotated[list[Route], Field(max_length=MAX_ROUTES)] = []
    depends_on: Annotated[list[Name], Field(max_length=MAX_LIST)] = []
    environment: Annotated[dict[EnvName, FreeText], Field(max_length=MAX_ENVIRONMENT)] = {}
    secrets: Annotated[list[Name], Field(max_length=MAX_LIST)] = []
    volumes: Annotated[dict[Name, AbsPath], Field(max_length=MAX_VOLUMES)] = {}
    tmpfs: Annotated[list[AbsPath], Field(max_length=MAX_LIST)] = []
    read_only: bool | None = None
    cap_add: Annotated[list[Cap], Field(max_length=MAX_LIST)] = []
    command: Argv | None = None
    # Where no registry is reachable: a bundled stand-in recipe (ops/images/standins)
    # or a build context, built from Debian's packages and tagged as a stand-in.
    offline: RelPath | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Service:
        if self.image is None and self.build is None:
            raise ValueError("give 'image' or 'build' (or both)")
        if self.port is None and (
            self.routes or self.metrics or (self.health and self.health.path)
        ):
            raise ValueError(
                "'port' is required when the service has routes, metrics or an HTTP health path"
            )
        return self


class HostSpec(_Model):
    cpus: Annotated[Literal["auto"] | int, _auto(parse_cpus, "CPUs like 4 or 0.5")] = "auto"
    memory: Annotated[Literal["auto"] | int, _auto(parse_size, "a size like 16G")] = "auto"
    # CPU is compressible: limits may add up to this many times the usable CPUs
    # (reservations never do). Memory limits are never overcommitted.
    cpu_overcommit: float = Field(1.0, ge=1.0, le=8.0)
    reserve: Reserve = Field(default_factory=lambda: Reserve())


class Reserve(_Model):
    cpus: Annotated[int, BeforeValidator(parse_reserve_cpus)] = 500
    memory: Annotated[int, BeforeValidator(parse_reserve_size)] = GiB


class Tls(_Model):
    certificate: AbsPath
    key: AbsPath


class Edge(_Model):
    """nginx in front of everything; the only service published on all interfaces."""

    image: Image = "vots/edge:latest"
    build: RelPath | None = None
    resources: Resources | None = None
    bind: IPv4 = "0.0.0.0"
    http_port: Port = 80
    https_port: Port = 443
    client_max_body: Size = 10 * MiB
    headers: Annotated[dict[HeaderName, HeaderValue], Field(max_length=MAX_HEADERS)] = {}
    worker_connections: int = Field(4096, ge=64, le=65536)


class Monitor(_Model):
    enabled: bool = True
    image: Image | None = None
    resources: Resources | None = None
    offline: RelPath | None = None  # default: the bundled stand-in, where there is one


def _monitor(value: Any) -> Any:
    if isinstance(value, bool):
        return {"enabled": value}
    return value


MonitorField = Annotated[Monitor, BeforeValidator(_monitor)]


class Monitoring(_Model):
    prometheus: MonitorField = Monitor()
    node_exporter: MonitorField = Monitor()
    cadvisor: MonitorField = Monitor()
    scrape_interval: Duration = "15s"
    retention: Duration = "15d"
    bind: IPv4 = "127.0.0.1"
    port: Port = 9090


class SecretSpec(_Model):
    file: Annotated[
        str,
        _pattern(re.compile(r"^[A-Za-z0-9._/@+-]+$"), "a file path like ./secrets/llm_api_key"),
    ]


class Stack(_Model):
    project: Name = "vots"
    host: HostSpec = HostSpec()
    domain: Hostname
    tls: Tls
    edge: Edge = Edge()
    services: Annotated[dict[Name, Service], Field(max_length=MAX_SERVICES)]
    secrets: Annotated[dict[Name, SecretSpec], Field(max_length=MAX_SECRETS)] = {}
    monitoring: Monitoring = Monitoring()


HostSpec.model_rebuild()

# --------------------------------------------------------------------------- workloads

_LANG_DEFAULTS: dict[str, dict[str, Any]] = {
    # cpu min (millicores), memory min, pids, read_only, tmpfs, cap_add
    "python": {
        "cpu": 250,
        "mem": 256 * MiB,
        "pids": 512,
        "ro": True,
        "tmpfs": ["/tmp"],
        "caps": [],
    },
    "go": {"cpu": 100, "mem": 64 * MiB, "pids": 512, "ro": True, "tmpfs": ["/tmp"], "caps": []},
    "rust": {"cpu": 100, "mem": 64 * MiB, "pids": 512, "ro": True, "tmpfs": ["/tmp"], "caps": []},
    "node": {
        "cpu": 250,
        "mem": 256 * MiB,
        "pids": 1024,
        "ro": False,
        "tmpfs": ["/tmp"],
        "caps": [],
    },
    "static": {"cpu": 50, "mem": 32 * MiB, "pids": 128, "ro": True, "tmpfs": ["/tmp"], "caps": []},
    # Official datastore images start as root and drop to their own user (gosu).
    "datastore": {
        "cpu": 250,
        "mem": 256 * MiB,
        "pids": 2048,
        "ro": False,
        "tmpfs": ["/tmp"],
        "caps": ["CHOWN", "SETGID", "SETUID", "DAC_OVERRIDE", "FOWNER"],
    },
}

_BUILTIN: dict[str, dict[str, Any]] = {
    "edge": {
        "cpu": 250,
        "mem": 64 * MiB,
        "max_mem": 512 * MiB,
        "weight": 2,
        "pids": 1024,
        "caps": ["CHOWN", "SETGID", "SETUID", "NET_BIND_SERVICE"],
        # Debian's nginx writes its pid, temp files and default logs here.
        "tmpfs": ("/tmp", "/run", "/var/lib/nginx", "/var/log/nginx"),
    },
    "prometheus": {
        "image": "prom/prometheus:v2.53.2",
        "offline": "prometheus",
        "cpu": 250,
        "mem": 512 * MiB,
        "max_mem": 4 * GiB,
        "weight": 2,
        "pids": 512,
        "caps": [],
    },
    "node-exporter": {
        "image": "prom/node-exporter:v1.8.2",
        "offline": "node-exporter",
        "cpu": 50,
        "mem": 32 * MiB,
        "max_cpu": 500,
        "max_mem": 128 * MiB,
        "weight": 1,
        "pids": 128,
        "caps": [],
    },
    "cadvisor": {
        "image": "gcr.io/cadvisor/cadvisor:v0.49.1",
        "cpu": 100,
        "mem": 128 * MiB,
        "max_cpu": 1000,
        "max_mem": 512 * MiB,
        "weight": 1,
        "pids": 256,
        "caps": ["DAC_READ_SEARCH"],
    },
}


@dataclass(frozen=True)
class Workload:
    """One service as the planner and templates see it, defaults resolved.

    ``kind`` is ``app``/``datastore`` for stack services and ``edge``,
    ``prometheus``, ``node-exporter``, ``cadvisor`` for the built-ins.
    """

    name: str
    kind: str
    image: str | None
    build: str | None
    replicas: int
    cpu_min: int
    cpu_max: int | None
    cpu_weight: int
    mem_min: int
    mem_max: int | None
    mem_weight: int
    pids: int
    read_only: bool
    tmpfs: tuple[str, ...]
    cap_add: tuple[str, ...]
    internal: bool
    port: int | None = None
    spec: Service | None = None
    yaml_loc: tuple[str, ...] = field(default=())
    offline: str | None = None  # a stand-in recipe or build context (ops.images)


def _workload(name: str, svc: Service) -> Workload:
    d = _LANG_DEFAULTS[svc.language]
    r = svc.resources
    return Workload(
        name=name,
        kind="datastore" if svc.language == "datastore" else "app",
        image=svc.image,
        build=svc.build,
        replicas=svc.replicas,
        cpu_min=r.cpu.min if r.cpu.min is not None else d["cpu"],
        cpu_max=r.cpu.max,
        cpu_weight=r.cpu_weight,
        mem_min=r.memory.min if r.memory.min is not None else d["mem"],
        mem_max=r.memory.max,
        mem_weight=r.memory_weight or r.cpu_weight,
        pids=r.pids or d["pids"],
        read_only=d["ro"] if svc.read_only is None else svc.read_only,
        tmpfs=tuple(dict.fromkeys([*d["tmpfs"], *svc.tmpfs])),
        cap_add=tuple(dict.fromkeys([*(svc.cap_add or d["caps"])])),
        internal=(svc.language == "datastore") if svc.internal is None else svc.internal,
        port=svc.port,
        spec=svc,
        yaml_loc=("services", name),
        offline=svc.offline,
    )


def _builtin(
    name: str,
    kind: str,
    image: str | None,
    build: str | None,
    res: Resources | None,
    replicas: int = 1,
    loc: tuple[str, ...] = (),
    offline: str | None = None,
) -> Workload:
    d = _BUILTIN[kind]
    r = res or Resources()
    return Workload(
        name=name,
        kind=kind,
        image=image or d.get("image"),
        build=build,
        replicas=replicas,
        cpu_min=r.cpu.min if r.cpu.min is not None else d["cpu"],
        cpu_max=r.cpu.max if r.cpu.max is not None else d.get("max_cpu"),
        cpu_weight=r.cpu_weight if res else d.get("weight", 1),
        mem_min=r.memory.min if r.memory.min is not None else d["mem"],
        mem_max=r.memory.max if r.memory.max is not None else d.get("max_mem"),
        mem_weight=(r.memory_weight or r.cpu_weight) if res else d.get("weight", 1),
        pids=r.pids or d["pids"],
        read_only=True,
        tmpfs=tuple(d.get("tmpfs", ("/tmp",))),
        cap_add=tuple(d["caps"]),
        internal=kind in ("node-exporter", "cadvisor"),
        yaml_loc=loc,
        offline=offline or d.get("offline"),
    )


BUILTIN_NAMES = {
    "edge": "nginx",
    "prometheus": "prometheus",
    "node-exporter": "node-exporter",
    "cadvisor": "cadvisor",
}


def workloads(stack: Stack) -> list[Workload]:
    """Every container group to run, stack services first, sorted for determinism."""
    out = [_workload(n, s) for n, s in sorted(stack.services.items())]
    e = stack.edge
    out.append(_builtin("nginx", "edge", e.image, e.build, e.resources, 1, ("edge",)))
    m = stack.monitoring
    for key, kind in (
        ("prometheus", "prometheus"),
        ("node_exporter", "node-exporter"),
        ("cadvisor", "cadvisor"),
    ):
        mon: Monitor = getattr(m, key)
        if mon.enabled:
            loc = ("monitoring", key)
            out.append(_builtin(kind, kind, mon.image, None, mon.resources, 1, loc, mon.offline))
    return out


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedStack:
    """A validated stack plus where it came from, for error lines and build paths."""

    stack: Stack
    path: Path
    lines: LineMap

    def error(self, message: str, loc: tuple[str | int, ...]) -> SpecError:
        return SpecError(
            message, path=str(self.path), line=self.lines.line(loc), key=format_loc(loc)
        )


def _cross_check(loaded: LoadedStack) -> None:
    stack = loaded.stack
    names = set(stack.services)
    for builtin in BUILTIN_NAMES.values():
        if builtin in names:
            raise loaded.error(
                f"'{builtin}' is reserved for the built-in {builtin} service", ("services", builtin)
            )
    routes: dict[str, tuple[str, int]] = {}
    for name, svc in sorted(
        stack.services.items(), key=lambda kv: loaded.lines.line(("services", kv[0])) or 0
    ):
        for i, dep in enumerate(svc.depends_on):
            if dep not in names:
                raise loaded.error(
                    _unknown(dep, names, "service"), ("services", name, "depends_on", i)
                )
            if dep == name:
                raise loaded.error(
                    "a service cannot depend on itself", ("services", name, "depends_on", i)
                )
        for i, secret in enumerate(svc.secrets):
            if secret not in stack.secrets:
                raise loaded.error(
                    _unknown(secret, set(stack.secrets), "secret"), ("services", name, "secrets", i)
                )
        for key in svc.environment:
            if _SECRETISH.search(key) and not key.endswith("_FILE"):
                raise loaded.error(
                    "looks like a secret; declare it under 'secrets:' and pass its path as "
                    f"{key}_FILE=/run/secrets/<name> instead of an inline value",
                    ("services", name, "environment", key),
                )
        internal = (svc.language == "datastore") if svc.internal is None else svc.internal
        if internal and svc.routes:
            raise loaded.error(
                "an internal service cannot have routes (nginx cannot reach it); set internal: false",
                ("services", name, "routes"),
            )
        for i, route in enumerate(svc.routes):
            if route.path in routes:
                other, j = routes[route.path]
                raise loaded.error(
                    f"route {route.path} is already served by services.{other}.routes[{j}]",
                    ("services", name, "routes", i, "path"),
                )
            routes[route.path] = (name, i)
    _check_ports(loaded)
    _check_cycles(loaded)


def _check_ports(loaded: LoadedStack) -> None:
    """Two published ports on one host address cannot both bind."""
    stack = loaded.stack
    edge, mon = stack.edge, stack.monitoring
    published = [
        (("edge", "http_port"), edge.bind, edge.http_port),
        (("edge", "https_port"), edge.bind, edge.https_port),
    ]
    if mon.prometheus.enabled:
        published.append((("monitoring", "port"), mon.bind, mon.port))
    for i, (loc, bind, port) in enumerate(published):
        for other_loc, other_bind, other_port in published[:i]:
            overlap = bind == other_bind or "0.0.0.0" in (bind, other_bind)
            if port == other_port and overlap:
                raise loaded.error(
                    f"host port {port} is already published by {format_loc(other_loc)}", loc
                )
    seen: dict[str, str] = {}
    for name in stack.edge.headers:
        if name.lower() in seen:
            raise loaded.error(
                f"header {name} is already set as {seen[name.lower()]} (header names ignore case)",
                ("edge", "headers", name),
            )
        seen[name.lower()] = name


def _check_cycles(loaded: LoadedStack) -> None:
    graph = {n: list(s.depends_on) for n, s in loaded.stack.services.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = " -> ".join([*trail[trail.index(dep) :], dep]) if dep in trail else dep
                raise loaded.error(f"dependency cycle: {cycle}", ("services", node, "depends_on"))
            if dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def _unknown(value: str, known: set[str], what: str) -> str:
    import difflib

    close = difflib.get_close_matches(value, sorted(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"no {what} named '{value}'{hint}"


def missing_build_contexts(loaded: LoadedStack) -> list[str]:
    """``key: path`` for each build context that does not exist next to the stack file.

    A warning rather than an error: CI may render before the sources are checked out.
    """
    base = loaded.path.resolve().parent
    out = []
    for w in workloads(loaded.stack):
        if w.build and not (base / w.build).is_dir():
            out.append(
                f"{'.'.join(w.yaml_loc)}.build: {w.build} does not exist next to {loaded.path.name}"
            )
    return out


def parse_stack(text: str, path: str | Path = "stack.yaml") -> LoadedStack:
    """Validate stack text; raises SpecError with file, line and key path."""
    path = Path(path)
    data, lines = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError("expected a mapping at the top level", path=str(path), line=1)
    stack = validate(Stack, data, lines, str(path))
    loaded = LoadedStack(stack=stack, path=path, lines=lines)
    _cross_check(loaded)
    return loaded


def load_stack(path: str | Path) -> LoadedStack:
    """Read and validate a stack.yaml from disk."""
    return parse_stack(read_text(Path(path)), path)
