"""The `evogit` command line: parse options, call the runtime, format the result. Nothing else.

This module holds the `main` group, its error handling and `entry()`; the commands live by concern in
params.py (parameter types and shared options), render.py (what is printed), library.py, running.py,
authoring.py, sharing.py and serving.py, and register themselves on `main` as they are imported below.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import click

from ..errors import EvogitError
from ..userstate import cache_root
from .params import _Dir


class _Command(click.Command):
    """Refuses text arguments that are not UTF-8 as a usage error, before the command runs (Python hands such
    bytes over as lone surrogates, which break wherever the text goes). Paths may be any bytes, as on disk."""

    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            if isinstance(param.type, (click.Path, click.File)) or param.name is None:
                continue
            value = ctx.params.get(param.name)
            for text in value if isinstance(value, tuple) else (value,):
                if isinstance(text, str) and not _is_utf8(text):
                    raise click.BadParameter(f"{_shown(text)} is not UTF-8 text", ctx=ctx, param=param)
        return super().invoke(ctx)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _shown(text: str) -> str:
    clipped = text if len(text) <= 60 else text[:60] + "..."
    try:
        return repr(clipped.encode("utf-8", "surrogateescape"))  # the bytes as given: b'\xff'
    except UnicodeEncodeError:
        return ascii(clipped)


class _Warnings(logging.Handler):
    """The library's warnings (damaged local state rebuilt, a torn log tail cut): one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"Warning: {record.getMessage()}", err=True)


class _Group(click.Group):
    """Turns evogit errors into one line and exit 1; a bug into one line, a logged traceback and exit 3."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        logger = logging.getLogger("evogit")
        if not any(isinstance(h, _Warnings) for h in logger.handlers):
            logger.addHandler(_Warnings())
        try:
            return super().invoke(ctx)
        except EvogitError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except BrokenPipeError:  # `evogit log | head`: the reader left; that is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:  # the file system said no (a path under a file, no permission, a full disk)
            click.echo(f"Error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - last-resort reporting of a bug
            log = cache_root() / "evogit.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", errors="backslashreplace") as f:  # argv may hold bytes that are not UTF-8
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n{traceback.format_exc()}")
            click.echo(f"Error: unexpected {type(e).__name__}: {e} (traceback in {log})", err=True)
            sys.exit(3)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evogit")
@click.option("--repo", "repo", type=_Dir(), default=None,
              help="Skills repository for the command (like the command's own --repo; default: $EVOGIT_REPO or ~/.evogit).")
def main(repo: Path | None) -> None:
    """evogit: a git-backed library of tested WebAssembly tools that agents create, run and evolve."""


def entry() -> None:
    """Console-script entry point: run the CLI, then leave without interpreter teardown.

    wasmtime's WASI output callbacks are released on its own worker threads; if that happens while Python is
    finalising, the process aborts after the command's work is done (design note §5). Flushing and calling
    os._exit once the command has finished avoids that race without losing any output.
    """
    code: int = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            click.echo(e.code, err=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


# Each module registers its commands on `main` when imported (after `main` exists, hence here).
from . import authoring, library, running, serving, sharing  # noqa: E402, F401
