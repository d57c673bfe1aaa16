"""The ``inspekt`` command line: thin commands over the library.

One error boundary: an ``InspektError`` (something the user can fix) prints one line and
exits 2; an unexpected error prints one line asking for ``--debug`` and a report, and exits
1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape
from typer.core import TyperGroup

from inspekt.cli.common import STATE, err_console
from inspekt.errors import InspektError

# Usage errors belong to click, which reports them itself (status 2, with a did-you-mean).
# Typer may vendor its own click, so find its ClickException through a public Typer class.
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_CLICK_ERRORS = (_CLICK_EXCEPTION, typer.Exit, typer.Abort, KeyboardInterrupt)


def _user_error(exc: InspektError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_status)


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InspektError as exc:
            if STATE["debug"]:
                raise
            raise _user_error(exc) from None
        except _CLICK_ERRORS:
            raise
        except BrokenPipeError:  # `inspekt ... --json | head`: the reader left; stop quietly, as cat does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            raise typer.Exit(141) from None
        except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
            if STATE["debug"]:
                raise
            from inspekt.io.outputs import disk_full

            full = disk_full(exc, getattr(exc, "filename", None))  # a full disk, wherever it struck
            if full is not None:
                raise _user_error(full) from None
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                "Run again with --debug for the traceback, and please report it.",
                highlight=False,
            )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="inspekt: train, evaluate, explain, export and serve image models for inspection.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    STATE["debug"] = debug


from inspekt.cli import (  # noqa: E402,F401  (register commands)
    correct,
    data,
    drift,
    evaluate,
    explain,
    export,
    monitor,
    predict,
    serve,
    show,
    system,
    train,
    workbench,
)


def main() -> None:
    """Console-script entry point. ``--debug`` may come anywhere (the errors say "run again with --debug",
    and users add it at the end); it is an option of ``inspekt`` itself, so it is moved to the front."""
    args = sys.argv[1:]
    if "--debug" in args[1:] and "--" not in args[: args.index("--debug")]:
        args = ["--debug", *(a for a in args if a != "--debug")]
    app(args=args, prog_name="inspekt")
