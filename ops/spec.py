"""YAML spec files with line numbers, validated by pydantic, reported as one line.

Shared by every file the suite reads (``stack.yaml`` now, ``scenarios.yaml``
later) so that all of them report ``file:LINE: key.path: what is wrong``.
"""

from __future__ import annotations

import difflib
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


def load_yaml(text: str, path: str) -> tuple[Any, LineMap]:
    """Parse YAML into plain data and a line map; duplicate keys are errors, not overwrites."""
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
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", path=path) from None
    return data, lines


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


def _message(err: ErrorDetails, model: type[BaseModel]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys (got {err.get('input')!r})"
    if kind == "list_type":
        return f"expected a list (got {err.get('input')!r})"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind not in ("value_error", "assertion_error"):
        msg = f"{msg[:1].lower()}{msg[1:]} (got {err.get('input')!r})"
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
    """Read a spec file, turning OS errors into one-line SpecErrors."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", path=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a YAML file", path=str(path)) from None
    except PermissionError:
        raise SpecError("permission denied", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason})", path=str(path)) from None
