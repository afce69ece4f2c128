"""YAML spec files with line numbers, validated by pydantic, reported as one line.

Shared by every file the suite reads (``stack.yaml``, ``scenarios.yaml``,
profile recipes, ``--recommendations`` files) so that all of them report
``file:LINE: key.path: what is wrong``.

Hostile or mistaken input costs nothing: before anything is built from a file,
one pass over the parser's events refuses what a spec file never needs and
what would make loading expensive -- a file over ``MAX_BYTES`` (only
``MAX_BYTES + 1`` bytes are ever read), YAML anchors and aliases (an alias
bomb expands a few hundred bytes into gigabytes), nesting deeper than
``MAX_DEPTH`` (the composer and validators recurse), more than ``MAX_NODES``
values, a scalar over ``MAX_SCALAR`` characters and numbers too long to be
meant. Each refusal is one line naming the file and line. The event pass is
iterative and bounded by the file size, so every input is refused or accepted
in well under a second (bench/spec_hostile.py measures it).
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ops.errors import SpecError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_BYTES = 1024 * 1024
"""A spec file larger than this (1 MiB) is refused before it is parsed."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists; spec files need fewer than ten levels."""
MAX_NODES = 20_000
"""Most values (scalars, mappings, lists) in one file."""
MAX_SCALAR = 64 * 1024
"""Longest single value, in characters."""
MAX_NUMBER_CHARS = 32
"""Longest plain number: anything longer is a typo or an attack, never a setting."""

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_CHECKED_TAGS = frozenset(
    [_INT_TAG, _FLOAT_TAG, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool"]
)
_PLAIN_INT = re.compile(r"[-+]?[0-9][0-9_]*")


class LineMap:
    """Maps a key path such as ``("services", "agent", "port")`` to its YAML line."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, ...], int] = {}

    def add(self, loc: Loc, line: int) -> None:
        self._lines.setdefault(tuple(str(p) for p in loc), line)

    def line(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its nearest ancestor that exists in the file."""
        key = tuple(str(p) for p in loc)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return self._lines.get((), None)


def format_loc(loc: Loc) -> str:
    """``("services", "agent", "routes", 0, "path")`` -> ``services.agent.routes[0].path``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.isprintable():  # keep the error on one line
                text = repr(text)
            out += f".{text}" if out else text
    return out


def _walk(node: yaml.Node, loc: Loc, lines: LineMap, path: str) -> None:
    lines.add(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    f"duplicate key '{key}' (first defined on line {seen[key]})",
                    path=path,
                    line=line,
                    key=format_loc((*loc, key)),
                )
            seen[key] = line
            lines.add((*loc, key), line)
            _walk(value_node, (*loc, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, path)
    elif isinstance(node, yaml.ScalarNode):
        _check_number(node, loc, path)


def _line(mark: Any) -> int | None:
    """1-based line of a mark (the C and the Python parser have different Mark types)."""
    return int(mark.line) + 1 if mark is not None else None


def _screen(text: str, path: str) -> None:
    """One pass over the parser's events: refuse what must not be composed.

    Nothing is built here (events only), so the cost is linear in the file
    size whatever the file holds; the composer runs only on what passes.
    """
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError(_too_large(), path=path)
    loader = _Loader(text)
    depth = nodes = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise SpecError(
                    f"YAML aliases (*{event.anchor}) are not allowed in spec files; "
                    "write the value out",
                    path=path,
                    line=_line(event.start_mark),
                )
            if isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            line = _line(event.start_mark)
            if event.anchor is not None:
                raise SpecError(
                    f"YAML anchors (&{event.anchor}) are not allowed in spec files; "
                    "write the value out",
                    path=path,
                    line=line,
                )
            nodes += 1
            if nodes > MAX_NODES:
                raise SpecError(
                    f"more than {MAX_NODES} values; a spec file this big is a mistake",
                    path=path,
                    line=line,
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise SpecError(
                        f"nested more than {MAX_DEPTH} levels deep", path=path, line=line
                    )
            elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
                raise SpecError(
                    f"a value of {len(event.value)} characters (at most {MAX_SCALAR})",
                    path=path,
                    line=line,
                )
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, path) from None
    finally:
        loader.dispose()


def _check_number(node: yaml.ScalarNode, loc: Loc, path: str) -> None:
    """A number the constructor would choke on (or turn into inf/nan) is refused here,
    with its line and key, instead of a traceback or a silent infinity later."""
    if node.tag not in _CHECKED_TAGS:
        return
    line = _line(node.start_mark)
    key = format_loc(loc) or None
    value = str(node.value)
    if node.tag in (_INT_TAG, _FLOAT_TAG) and len(value) > MAX_NUMBER_CHARS:
        raise SpecError(
            f"a number of {len(value)} characters (at most {MAX_NUMBER_CHARS}); "
            "quote it if it is text",
            path=path,
            line=line,
            key=key,
        )
    if node.tag == _INT_TAG and _PLAIN_INT.fullmatch(value):
        return  # a short decimal int always constructs
    try:
        number = yaml.constructor.SafeConstructor().construct_object(node)
    except (ValueError, OverflowError, TypeError, KeyError, AttributeError) as exc:
        kind = node.tag.rsplit(":", 1)[-1]
        raise SpecError(
            f"cannot read {show(value)} as {kind} ({exc}); quote it if it is text",
            path=path,
            line=line,
            key=key,
        ) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise SpecError(
            f"{show(value)} is not a finite number; give a number like 0.5",
            path=path,
            line=line,
            key=key,
        )


def _too_large() -> str:
    return (
        f"larger than {MAX_BYTES // 1024 // 1024} MiB; a spec file this big is a mistake "
        "(is it the right file?)"
    )


def _yaml_error(exc: yaml.YAMLError, text: str, path: str) -> SpecError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        return SpecError(f"invalid YAML: {problem}", path=path, line=_line(mark))
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML cannot hold (NUL, C1 controls, ...): name it and its line.
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character
        code = f"#x{ord(char):04x}" if isinstance(char, str) else f"#x{char:02x}"
        return SpecError(
            f"invalid YAML: character {code} is not allowed ({exc.reason})", path=path, line=line
        )
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SpecError(f"invalid YAML: {first}", path=path)


def load_yaml(text: str, path: str) -> tuple[Any, LineMap]:
    """Parse YAML into plain data and a line map; duplicate keys are errors, not overwrites.

    The text is screened first (size, aliases, depth, counts, numbers; see the
    module docstring), so composing it afterwards is cheap and cannot recurse deeply.
    """
    _screen(text, path)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise SpecError("the file is empty", path=path, line=1)
            lines = LineMap()
            _walk(node, (), lines, path)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, path) from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # A constructor failure the checks above did not foresee: still one line.
        raise SpecError(f"invalid YAML value ({exc})", path=path) from None
    return data, lines


def load_file(path: str | Path) -> tuple[Any, LineMap]:
    """Read and parse a spec file: the one loader every spec reader should call."""
    return load_yaml(read_text(Path(path)), str(path))


def _unwrap(tp: Any) -> Any:
    """Strip Annotated/Optional so we can walk a model's field types."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}\u2026"


def _message(err: ErrorDetails, model: type[BaseModel]) -> str:
    kind = err["type"]
    loc = err["loc"]
    ctx = err.get("ctx") or {}
    if kind == "too_long":
        given = err.get("input")
        actual = ctx.get("actual_length") or (
            len(given) if isinstance(given, dict | list) else "more"
        )
        return f"at most {ctx.get('max_length')} entries allowed (got {actual})"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys (got {show(err.get('input'))})"
    if kind == "list_type":
        return f"expected a list (got {show(err.get('input'))})"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind not in ("value_error", "assertion_error"):
        msg = f"{msg[:1].lower()}{msg[1:]} (got {show(err.get('input'))})"
    return msg


def validate(model: type[M], data: Any, lines: LineMap, path: str) -> M:
    """Validate ``data`` against ``model``; the first problem becomes one SpecError line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # An unknown key usually explains a "missing" one next to it (a typo):
        # report the typo first, then the earliest line.
        err = min(errors, key=lambda e: (e["type"] != "extra_forbidden", lines.line(e["loc"]) or 0))
        # pydantic marks a bad dict key with a trailing "[key]" element.
        loc = tuple(p for p in err["loc"] if isinstance(p, int | str) and p != "[key]")
        raise SpecError(
            _message(err, model),
            path=path,
            line=lines.line(loc),
            key=format_loc(loc) or None,
        ) from None


def read_text(path: Path) -> str:
    """Read a spec file, turning OS errors into one-line SpecErrors.

    At most ``MAX_BYTES + 1`` bytes are read, so a 50 MB file (or ``/dev/zero``)
    costs no more than a 1 MiB one.
    """
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("file not found", path=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a YAML file", path=str(path)) from None
    except PermissionError:
        raise SpecError("permission denied", path=str(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot read it ({exc.strerror or exc})", path=str(path)) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(_too_large(), path=str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason})", path=str(path)) from None
