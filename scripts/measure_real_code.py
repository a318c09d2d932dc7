"""Measure tapefix's precision on code it did not write: run ``--check`` over a tree and print what to read.

    python scripts/measure_real_code.py TREE [TREE ...] [--context 3] [--summary-only]

Prints the files scanned, the files holding a tape block and how many tape blocks, the modules a tape
elsewhere in the tree runs (whole-project scope), the findings by rule, and then each finding with a
few lines of source around it, for a person to judge real or false. docs/precision.md records a run
over the sources inside published TensorFlow wheels (unpacked outside the repository).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import Dict, List, Sequence

from tapefix import api, engine, project
from tapefix.analysis.scope import ModuleAnalysis
from tapefix.types import Config


def tape_blocks(source: str) -> int:
    """How many ``with tf.GradientTape()`` blocks a module holds (0 when it does not parse)."""
    if not engine.might_hold_tape(source):
        return 0
    try:
        return len(ModuleAnalysis(engine.parse(source)).tape_blocks)
    except (engine.SourceError, RecursionError):
        return 0


def context_lines(source: str, line: int, around: int) -> List[str]:
    lines = source.splitlines()
    first, last = max(1, line - around), min(len(lines), line + around)
    return [f"{'>' if n == line else ' '}{n:6d}  {lines[n - 1]}" for n in range(first, last + 1)]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--context", type=int, default=3, help="lines of source shown around each finding")
    parser.add_argument("--summary-only", action="store_true", help="print the figures, not the findings")
    options = parser.parse_args(argv)

    started = time.perf_counter()
    files = [path for path, error in api.iter_python_files(options.trees) if error is None and path.endswith(".py")]
    blocks: Dict[str, int] = {}
    for path in files:
        text = api._read_text(path)
        count = tape_blocks(text) if text is not None else 0
        if count:
            blocks[path] = count
    entries = project.entry_points(files, api._read_text)
    results = api.run(options.trees, api.Mode.CHECK, Config())
    elapsed = time.perf_counter() - started

    by_rule: collections.Counter[str] = collections.Counter()
    through_call = 0
    errors = [r for r in results if r.error]
    findings = [(r, o) for r in results for o in r.outcomes]
    for _, outcome in findings:
        by_rule[outcome.finding.code] += 1
        through_call += outcome.finding.through_call

    print(f"trees: {' '.join(options.trees)}")
    print(f"files scanned: {len(files)}")
    print(f"files with a tape block: {len(blocks)}; tape blocks: {sum(blocks.values())}")
    entry_count = sum(len(e) for e in entries.values())
    print(f"modules run by a tape in another module: {len(entries)} ({entry_count} entry points)")
    print(f"files that did not parse or read: {len(errors)}")
    print(f"findings: {len(findings)} ({through_call} in functions reached through a call)")
    for code, count in sorted(by_rule.items()):
        print(f"  {code}: {count}")
    print(f"seconds: {elapsed:.1f}")
    if options.summary_only:
        return 0
    for result, outcome in findings:
        finding = outcome.finding
        where = "through a call" if finding.through_call else "in a tape block"
        fix = finding.fix.safety.value if finding.fix is not None else "no fix"
        print()
        place = f"{result.path}:{finding.start.line}:{finding.start.column + 1}"
        print(f"{place}: {finding.code} {finding.message} [{where}; {fix}]")
        print("\n".join(context_lines(result.source, finding.start.line, options.context)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
