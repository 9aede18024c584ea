"""The gimtool command line: global options, and one subcommand per module in gimtool.commands.

Command modules import nothing heavy at import time (torch, matplotlib, msprime are imported
inside the command), so `gimtool --help` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys

import typer

from gimtool import __version__
from gimtool import progress, signals
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
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars on a terminal, no progress lines in logs."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    _state["verbose"] = verbose
    progress.set_enabled(not no_progress)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )


# the options of the app that every subcommand also takes after its name (lifted by _global_first)
GLOBAL_FLAGS = ("-v", "--verbose", "--no-progress")
GLOBAL_NOTE = ("\n\nAlso after the subcommand: -v/--verbose (details and tracebacks) and --no-progress (no progress "
               "bars on a terminal, no progress lines in batch logs).")


def _is_command_line(line: str, previous: str) -> bool:
    s = line.strip()
    return s.startswith(("gimtool ", "torchrun ", "python ", "Example")) or previous.rstrip().endswith("\\")


def unwrap(doc: str) -> str:
    """A module docstring as help text: the lines of a sentence joined (the help is wrapped to the
    terminal, so a docstring's own line breaks would cut sentences in the middle), while example
    command lines and lines of a different indentation keep their own line."""
    paragraphs = []
    for para in doc.split("\n\n"):
        lines: list[str] = []
        for ln in para.split("\n"):
            prev = lines[-1] if lines else ""
            same_indent = (ln[:1].isspace()) == (prev[:1].isspace())
            if lines and ln.strip() and same_indent and not _is_command_line(ln, prev) and not _is_command_line(prev, ""):
                lines[-1] = prev.rstrip() + " " + ln.strip()
            else:
                lines.append(ln)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _argument_help() -> None:
    """typer < 0.26 builds a positional argument without handing its help to click, whose
    Argument (click >= 8.3) then sets it to None: put it back, so that `clump --help` says what
    its FILES are."""
    from typer.core import TyperArgument

    init = TyperArgument.__init__
    if getattr(init, "keeps_help", False):
        return

    def __init__(self, *args, help=None, **kwargs):
        init(self, *args, help=help, **kwargs)
        self.help = help

    __init__.keeps_help = True
    TyperArgument.__init__ = __init__


def _register() -> None:
    _argument_help()
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"gimtool.commands.{module}")
        doc = unwrap((mod.__doc__ or "").strip())
        app.command(name=name, help=doc + GLOBAL_NOTE, short_help=doc.split("\n\n")[0] if doc else None)(mod.command)


_register()


# renamed options, still accepted (hidden) with a warning: (command, old name) -> new name
RENAMED = {("pcs", "--n"): "--n-pcs", ("h2", "--chunk-size"): "--chunk-snps"}


def _renamed(args: list[str]) -> list[str]:
    """Old option names of the subcommand (args[0] once the global flags are first) as the new ones."""
    rest = [a for a in args if a not in GLOBAL_FLAGS]
    command = rest[0] if rest else None
    end = args.index("--") if "--" in args else len(args)
    out = list(args)
    for i, a in enumerate(args[:end]):
        name, eq, value = a.partition("=")
        new = RENAMED.get((command, name))
        if new is not None:
            print(f"Warning: {command} {name} is deprecated; use {new}", file=sys.stderr)
            out[i] = new + eq + value
    return out


def _global_first(args: list[str]) -> list[str]:
    """`gimtool gwas ... -v --no-progress` as `gimtool -v --no-progress gwas ...`: the GLOBAL_FLAGS
    anywhere before a `--`."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]


@contextlib.contextmanager
def _only_command(name: str | None):
    """While running subcommand `name`, the app holds only that command: typer builds the click
    command of every registered command on each call (inspecting every option: 0.03-0.05 s for
    all of them, a tenth of prep-geno's start-up); the others are not needed to parse its
    arguments. Any other first argument (--help, a typo) gets the whole app."""
    every = app.registered_commands
    if name in COMMANDS:
        app.registered_commands = [c for c in every if c.name == name]
    try:
        yield
    finally:
        app.registered_commands = every


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns (and, called without `argv`, exits with) the exit status.

    Typer/click handle usage errors themselves (usage line, exit 2); a GimtoolError, or an OSError
    (a disk full, a permission), becomes one `Error: ...` line and exit 1 (2 for an OptionError, a
    bad option value, as typer's own range checks), with the traceback only under -v. SIGINT and
    SIGTERM end the command cleanly (gimtool.signals): one line, exit 130 or 143.
    """
    signals.install()
    args = _renamed(_global_first(sys.argv[1:] if argv is None else list(argv)))
    command = next((a for a in args if a not in GLOBAL_FLAGS), None)
    try:
        with _only_command(command):
            app(args=args, prog_name="gimtool")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130 and _caused_by_keyboard_interrupt(e):  # typer's silent Exit(130) for a Ctrl-C
            print("Error: interrupted by SIGINT", file=sys.stderr)
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
        if code == 0 and command in COMMANDS and getattr(importlib.import_module(f"gimtool.commands.{COMMANDS[command]}"),
                                                         "EXIT_WITHOUT_TEARDOWN", False):
            _exit_now()
        sys.exit(code)
    return code


def _caused_by_keyboard_interrupt(e: BaseException) -> bool:
    """typer turns a KeyboardInterrupt into exit 130 without a word (raise Exit(130) from it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _exit_now() -> None:
    """Exit 0 without the interpreter's teardown: for a command whose outputs are all closed when
    it returns and that leaves no threads or processes behind (EXIT_WITHOUT_TEARDOWN in its
    module). Freeing every module of numpy and polars and the final garbage collections take
    0.1-0.3 s, as long as prep-geno's own work on a 5,000 x 100,000 cohort."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)
