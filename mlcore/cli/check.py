"""Check a config fully, build nothing: plugins, keys, types, ranges and the files it names.

Reads no data and builds no model, so a config can be checked in a second before a long
job is queued. Prints the resolved config (every default filled in, as ``train`` would
write it to ``config.yaml``) and exits 0; any problem ends in one message listing them
all and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

NAME = "check"
HELP = "check a config (plugins, keys, types, ranges, files) without building anything"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when the config is fine")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config

    config = load_config(args.config, args.overrides, check_files=True)
    if not args.quiet:
        sys.stdout.write(config.to_yaml())
        print(f"mlcore: {args.config}: config ok", file=sys.stderr)
    return 0
