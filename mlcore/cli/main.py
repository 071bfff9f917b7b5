"""``mlcore`` — the command line entry point.

Errors a user can cause (:class:`mlcore.MlcoreError`) end with one message on stderr and
exit status 2; ``--debug`` shows the traceback as well. Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence

from ..errors import MlcoreError, TrainingInterrupted

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="the experiment's YAML file" + (
        " (or a model exported by `mlcore export`, a .onnx file)" if p.prog.endswith(" predict") else ""))
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                   help="override config values, e.g. --set train.epochs=5 'model={name: resnet50}'")
    _debug_arg(p)


def _debug_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def parser() -> argparse.ArgumentParser:
    from . import analyze, calibrate, check, evaluate, export, list_plugins, predict, prepare, report, train

    top = argparse.ArgumentParser(prog="mlcore", description="Multi-label image recognition with PyTorch.")
    from .. import __version__

    top.add_argument("--version", action="version", version=f"mlcore {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (train, evaluate, calibrate, export, predict, report, check, prepare, analyze,
                   list_plugins):
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        if module.TAKES_CONFIG:
            _config_args(p)
        else:
            _debug_arg(p)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return top


class _Warnings:
    """Show warnings as ``mlcore: warning: …`` lines instead of source locations."""

    def __init__(self, debug: bool):
        self.debug = debug

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if self.debug:
            print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")
        else:
            print(f"mlcore: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _Warnings(args.debug)
    try:
        return int(args.run(args) or 0)
    except TrainingInterrupted as exc:
        print(f"mlcore: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MlcoreError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"mlcore: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `mlcore list-plugins | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("mlcore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
