"""Measure tapefix's precision on code it did not write: run ``--check`` over trees and print what to read.

    python scripts/measure_real_code.py TREE [TREE ...] [--each] [--context 3] [--summary-only]

For each tree: the files scanned, the files holding a tape block and how many tape blocks, the modules
a tape elsewhere in the tree runs (whole-project scope), the findings by rule, and then each finding
with a few lines of source around it, for a person to judge real or false. With ``--each``, every
folder inside a TREE is measured as a tree of its own (one per unpacked package), and a total follows.
docs/precision.md records a run over the sources inside published TensorFlow wheels, unpacked outside
the repository.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Counter, List, Sequence

from tapefix import api, engine, prefilter, project
from tapefix.analysis.scope import ModuleAnalysis
from tapefix.types import Config, SourceError


@dataclass
class Figures:
    """What one run over one tree found."""

    files: int = 0
    tape_files: int = 0
    tape_blocks: int = 0
    entered_modules: int = 0
    entry_points: int = 0
    errors: int = 0
    findings: int = 0
    through_call: int = 0
    by_rule: Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    def add(self, other: Figures) -> None:
        for name in ("files", "tape_files", "tape_blocks", "entered_modules", "entry_points", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.findings += other.findings
        self.through_call += other.through_call
        self.by_rule.update(other.by_rule)
        self.seconds += other.seconds


def tape_blocks(source: str) -> int:
    """How many tape blocks (``with tf.GradientTape() as t``, ``with t:``) a module holds."""
    if not prefilter.might_hold_tape(source):
        return 0
    try:
        return len(ModuleAnalysis(engine.parse(source)).tape_blocks)
    except (SourceError, RecursionError):
        return 0


def context_lines(source: str, line: int, around: int) -> List[str]:
    lines = source.splitlines()
    first, last = max(1, line - around), min(len(lines), line + around)
    return [f"{'>' if n == line else ' '}{n:6d}  {lines[n - 1]}" for n in range(first, last + 1)]


def measure(tree: str, around: int, show: bool) -> Figures:
    """Run ``tapefix --check`` over one tree (as one project); print its figures and, with ``show``,
    every finding in context."""
    started = time.perf_counter()
    figures = Figures()
    files = [path for path, error in api.iter_python_files([tree]) if error is None and path.endswith(".py")]
    figures.files = len(files)
    for path in files:
        text = api._read_text(path)
        count = tape_blocks(text) if text is not None else 0
        figures.tape_files += count > 0
        figures.tape_blocks += count
    entries = project.entry_points(files, api._read_text)
    figures.entered_modules = len(entries)
    figures.entry_points = sum(len(e) for e in entries.values())
    results = api.run([tree], api.Mode.CHECK, Config())
    figures.errors = sum(1 for r in results if r.error)
    findings = [(r, o) for r in results for o in r.outcomes]
    figures.findings = len(findings)
    for _, outcome in findings:
        figures.by_rule[outcome.finding.code] += 1
        figures.through_call += outcome.finding.through_call
    figures.seconds = time.perf_counter() - started
    report(tree, figures)
    if show:
        for result, outcome in findings:
            finding = outcome.finding
            where = "through a call" if finding.through_call else "in a tape block"
            fix = finding.fix.safety.value if finding.fix is not None else "no fix"
            place = f"{result.path}:{finding.start.line}:{finding.start.column + 1}"
            print()
            print(f"{place}: {finding.code} {finding.message} [{where}; {fix}]")
            print("\n".join(context_lines(result.source, finding.start.line, around)))
        print()
    return figures


def report(tree: str, figures: Figures) -> None:
    print(f"tree: {tree}")
    print(f"  files scanned: {figures.files}")
    print(f"  files with a tape block: {figures.tape_files}; tape blocks: {figures.tape_blocks}")
    print(f"  modules run by a tape in another module: {figures.entered_modules} ({figures.entry_points} entry points)")
    print(f"  files that did not parse or read: {figures.errors}")
    print(f"  findings: {figures.findings} ({figures.through_call} in functions reached through a call)")
    for code, count in sorted(figures.by_rule.items()):
        print(f"    {code}: {count}")
    print(f"  seconds: {figures.seconds:.1f}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--each", action="store_true", help="measure every folder inside each TREE on its own")
    parser.add_argument("--context", type=int, default=3, help="lines of source shown around each finding")
    parser.add_argument("--summary-only", action="store_true", help="print the figures, not the findings")
    options = parser.parse_args(argv)
    trees: List[str] = []
    for tree in options.trees:
        if options.each and os.path.isdir(tree):
            trees.extend(os.path.join(tree, name) for name in sorted(os.listdir(tree)) if not name.startswith("."))
        else:
            trees.append(tree)
    total = Figures()
    for tree in trees:
        total.add(measure(tree, options.context, not options.summary_only))
    if len(trees) > 1:
        report(f"all {len(trees)} trees", total)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
