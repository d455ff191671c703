"""``python -m benchmarks.speed``: the speed table (``make bench`` runs it with ``--quick``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.speed import format_table, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 9; slow references time 200k rows")
    parser.add_argument("--json", metavar="FILE", help="also write the full results as JSON")
    parser.add_argument("--device", default="cpu", help="cpu or cuda [default: cpu]")
    parser.add_argument("--no-peers", action="store_true", help="leave out Lightning, skorch and Keras if installed")
    args = parser.parse_args()
    result = run(quick=args.quick, device=args.device, with_peers=not args.no_peers,
                 echo=lambda s: print(s, file=sys.stderr, flush=True))  # fmt: skip
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
