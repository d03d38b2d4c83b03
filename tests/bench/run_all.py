"""Runs every tests/bench/bench_*.py and writes their output to docs/benchmarks.md.

    make bench            (or: python tests/bench/run_all.py [--only NAME])

Each benchmark measures its own baseline in the same run and prints ratios against it, so the
figures compare across machines better than absolute times do.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DOC = BENCH_DIR.parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="run only bench_NAME.py (the other sections of the doc are kept)")
    args = parser.parse_args()
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem == f"bench_{args.only}"]
    sections = []
    failed = False
    for script in scripts:
        print(f"running {script.name} ...", flush=True)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=1800)
        output = done.stdout.strip() if done.returncode == 0 else f"FAILED (exit {done.returncode})\n{done.stderr[-2000:]}"
        failed |= done.returncode != 0
        doc = (script.read_text().split('"""')[1].strip().splitlines() or [""])[0]
        sections.append(f"## {script.stem}\n\n{doc}\n\n```\n{output}\n```\n")
        print(output)
    header = (
        "# Benchmarks\n\nWritten by `make bench` (tests/bench/run_all.py); do not edit by hand.\n\n"
        f"Last run: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {machine()}.\n"
        "Absolute figures depend on the machine and its load; read the ratios against each baseline.\n\n"
    )
    if args.only and DOC.exists():
        # keep the other benches' latest sections; replace (or add) this one's
        kept = [part for part in DOC.read_text(encoding="utf-8").split("\n## ")[1:]
                if not part.startswith(f"bench_{args.only}\n")]
        sections = sorted(["## " + part.rstrip("\n") + "\n" for part in kept] + sections)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
