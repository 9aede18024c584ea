"""The gimtool command line: global options, and one subcommand per module in gimtool.commands.

Command modules import nothing heavy at import time (torch, matplotlib, msprime are imported
inside the command), so `gimtool --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from gimtool import __version__
from gimtool import signals
from gimtool.errors import GimtoolError

# subcommand name -> module in gimtool.commands that defines `command`
COMMANDS = {
    "simulate": "simulate",
    "prep-geno": "prep_geno",
    "prep-mri": "prep_mri",
    "train": "train",
    "embed": "embed",
    "pcs": "pcs",
    "gwas": "gwas",
    "clump": "clump",
    "h2": "h2",
    "mi": "mi",
    "merge": "merge",
}

app = typer.Typer(
    name="gimtool",
    help="Genetic InfoMax for imaging genetics: learn MRI representations that maximize mutual "
    "information with the genotype, and evaluate them for GWAS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"verbose": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gimtool {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Print progress details (and tracebacks on error)."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )


def _register() -> None:
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"gimtool.commands.{module}")
        doc = (mod.__doc__ or "").strip()
        app.command(name=name, help=doc, short_help=doc.splitlines()[0] if doc else None)(mod.command)


_register()


def _verbose_first(args: list[str]) -> list[str]:
    """`gimtool gwas ... -v` as `gimtool -v gwas ...`: -v/--verbose anywhere before a `--`."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in ("-v", "--verbose")]
    return flags + [a for a in args[:end] if a not in ("-v", "--verbose")] + args[end:]


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns (and, called without `argv`, exits with) the exit status.

    Typer/click handle usage errors themselves (usage line, exit 2); a GimtoolError, or an OSError
    (a disk full, a permission), becomes one `Error: ...` line and exit 1, with the traceback only
    under -v. SIGINT and SIGTERM end the command cleanly (gimtool.signals): one line, exit 130 or 143.
    """
    signals.install()
    try:
        app(args=_verbose_first(sys.argv[1:] if argv is None else list(argv)), prog_name="gimtool")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except GimtoolError as e:
        if _state["verbose"]:
            import traceback

            traceback.print_exc()
        print(f"Error: {e}", file=sys.stderr)
        code = e.exit_code
    except OSError as e:
        if _state["verbose"]:
            import traceback

            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""
        print(f"Error: {where}{e.strerror or e}", file=sys.stderr)
        code = 1
    except (signals.Interrupted, KeyboardInterrupt) as e:
        print(f"Error: {e if isinstance(e, signals.Interrupted) else 'interrupted by SIGINT'}", file=sys.stderr)
        code = getattr(e, "exit_code", 130)
    if argv is None:
        sys.exit(code)
    return code
