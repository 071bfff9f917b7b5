"""List the installed plugins: kind, name, distribution, version, summary.

Finding plugins reads distribution metadata only; the summary comes from each plugin's
object, whose module is light by convention (heavy imports happen inside ``build``), so
listing never imports torch for the built-ins. ``--check`` also reports each plugin's
status (``ok``, ``broken`` with its error, ``duplicate``) and exits 1 when any is not ok,
as ``pip check`` does.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..plugin import KINDS

NAME = "list-plugins"
HELP = "list installed plugins (--check: exit 1 when one is broken)"
TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON list of rows")
    p.add_argument("--check", action="store_true", help="show each plugin's status; exit 1 if any is not ok")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'resnet*'")


def run(args: argparse.Namespace) -> int:
    import fnmatch

    from ..registry import default_registry

    reg = default_registry()
    records = [r for r in reg.check_all(args.kind) if fnmatch.fnmatchcase(r.name, args.pattern)]
    rows = [r.as_row() for r in records]
    if not args.check:
        for row in rows:
            row.pop("status", None)
            row.pop("error", None)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        cols = ["kind", "name", "distribution", "version"] + (["status"] if args.check else []) + ["summary"]
        table = [[str(r.get(c, "")) for c in cols] for r in rows]
        widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
        for t, r in zip(table, rows):
            print("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())
            if args.check and r.get("error"):
                print(f"    {r['error']}")
    bad = [r for r in records if r.status in ("broken", "duplicate")]
    if args.check and bad:
        print(f"mlcore: {len(bad)} plugin(s) not ok: {', '.join(f'{r.kind}:{r.name}' for r in bad)}",
              file=sys.stderr)
        return 1
    return 0
