"""Explore the property tests with new random draws: the suite's run draws the same examples every time.

Runs the suite's hypothesis tests (those that use ``@given``) once per seed under the ``explore`` profile
(tests/conftest.py), each seed in its own pytest process, and prints the seeds whose run failed with
the tests that failed. A counterexample found here is pinned in the suite as an ``@example`` of its
test, after the defect it shows is fixed.

    python benchmarks/explore_properties.py [--seeds 20] [--first 1] [TEST_FILE ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def property_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "@given(" in p.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("files", nargs="*", help="test files (default: every test file with @given)")
    options = parser.parse_args()
    files = options.files or property_test_files()
    environment = {**os.environ, "TAPEFIX_HYPOTHESIS_PROFILE": "explore"}
    failed = 0
    started = time.perf_counter()
    for seed in range(options.first, options.first + options.seeds):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not tf and not slow"]
        run = subprocess.run(
            [*command, f"--hypothesis-seed={seed}", "-k", "not neovim", *files],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
        )
        tail = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr.strip()[-200:]
        print(f"seed {seed}: {tail}", flush=True)
        if run.returncode != 0:
            failed += 1
            for line in re.findall(r"^FAILED .*$", run.stdout, re.M):
                print(f"    {line}")
    print(
        f"{options.seeds - failed} of {options.seeds} seeds found no counterexample "
        f"({time.perf_counter() - started:.0f} s; files: {' '.join(files)})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
