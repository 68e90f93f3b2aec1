"""The `fer-hf` console script: argument handling and printing only.

Every subcommand imports its library module lazily, so `fer-hf --help` stays fast. Each module
here owns a group of subcommands, each with one `add_<name>` (parser) and one `_run_<name>`
(handler).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .export import add_export
from .predict import add_predict
from .prepare import add_prepare
from .publishing import add_publish, add_publish_space, add_release
from .training import add_average, add_evaluate, add_init, add_train

# Registry of subcommands, in `--help` order.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_prepare,
    add_export,
    add_predict,
    add_init,
    add_publish,
    add_publish_space,
    add_train,
    add_evaluate,
    add_average,
    add_release,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-hf", description="Facial expression recognition on the Hugging Face stack."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # Errors a user can cause carry a full message; a traceback would only hide it.
        print(f"fer-hf {args.command}: error: {err}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
