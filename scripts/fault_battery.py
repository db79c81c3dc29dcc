"""Run the fault battery (tests/faults.py) and print `fault | trials | survived | data lost`.

    python scripts/fault_battery.py            # the CI trial counts (tests/test_faults.py)
    python scripts/fault_battery.py --full     # more kills, mutations and flips
    python scripts/fault_battery.py --only kill9 --only signals

Exits 1 if any fault was not survived or lost data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from faults import FAULTS, run_fault  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="more trials per fault")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", choices=list(FAULTS), help="run only this fault (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="print each failure")
    args = parser.parse_args()
    rows, failed = [], False
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fault_battery_") as tmp:
        for name in args.only or FAULTS:
            t = time.perf_counter()
            result = run_fault(name, Path(tmp) / name, full=args.full, seed=args.seed)
            rows.append((result.fault, result.trials, result.survived, result.data_lost, time.perf_counter() - t))
            print(f"  {name}: {result.survived}/{result.trials} survived, {result.data_lost} lost "
                  f"({rows[-1][-1]:.0f} s)", file=sys.stderr, flush=True)
            failed |= not result.ok
            for why in result.failures[:20 if args.verbose else 3]:
                print(f"    {why}", file=sys.stderr)
    print("| fault | trials | survived | data lost | seconds |\n|---|---:|---:|---:|---:|")
    for fault, trials, survived, lost, seconds in rows:
        print(f"| {fault} | {trials} | {survived} | {lost} | {seconds:.0f} |")
    print(f"\n{'full' if args.full else 'fast'} mode, seed {args.seed}, {time.perf_counter() - start:.0f} s: "
          f"{'FAILED' if failed else 'all survived, no data lost'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
