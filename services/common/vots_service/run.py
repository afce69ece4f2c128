"""Starting a service: settings errors as one line, the CLI's error handling, uvicorn."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from vots_service.errors import ServiceError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def settings_error(exc: Any, env_names: Mapping[str, str]) -> ServiceError:
    """A pydantic ``ValidationError`` of a settings model as one line naming the variable."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "settings"
    name = env_names.get(name, name.upper())
    return ServiceError(f"{name}: {err['msg']}", field=name)


def build_settings(cls: type[T], env_names: Mapping[str, str], overrides: Mapping[str, Any]) -> T:
    """``cls`` from the environment with flags (the non-None ``overrides``) on top; a bad
    value is one :class:`ServiceError` line naming the variable."""
    from pydantic import ValidationError

    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise settings_error(exc, env_names) from None


def cli_errors(fn: F) -> F:
    """Expected failures as one line and exit 2; a traceback only for a bug."""
    import click

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ServiceError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(2)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(141)
        except OSError as exc:  # the machine, not the program: permissions, a full disk
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def serve(app: Any, host: str, port: int, *, graceful_s: int) -> None:
    """uvicorn on ``app`` until SIGTERM/SIGINT: stop accepting, let in-flight requests
    finish (up to ``graceful_s``), run the lifespan's shutdown. Exit 2 if it never
    started (the port taken, say)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=graceful_s,
        server_header=False,
        http="httptools",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as exc:
        raise ServiceError(f"--port {port}: {exc.strerror}") from exc
    if not server.started:
        sys.exit(2)
