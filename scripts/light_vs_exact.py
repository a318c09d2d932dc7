"""Does the ast-built tree clear only modules that libcst's exact tree clears too?

    python scripts/light_vs_exact.py TREE [TREE ...]

A check decides on the tree tapefix.analysis.lighttree builds from Python's ``ast`` whether a module has
a finding, and parses with libcst only when it does (tapefix.engine._may_find). For every module of the
given trees that may run under a tape, this runs both: the exact analysis (libcst's tree, the findings)
and the light decision. A module the exact tree finds something in and the light tree clears is a miss
(listed, and the exit status is 1); a light candidate without exact findings only costs a parse. Prints
the counts and the time each path took.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Sequence

from tapefix import engine
from tapefix.analysis.slicing import needed_source
from tapefix.prefilter import might_run_under_tape
from tapefix.types import SourceError


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    rules = engine.rules_for(engine.DEFAULT_CONFIG)
    modules = extra = 0
    misses: List[str] = []
    light_time = exact_time = 0.0
    for root in argv:
        for path in sorted(Path(root).rglob("*.py")):
            try:
                source = path.read_text(encoding="utf-8")
                if not might_run_under_tape(source):
                    continue
                needed = needed_source(source, ())
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                continue
            start = time.perf_counter()
            try:
                light = engine._may_find(source, needed, rules, ())
            except SourceError:
                light = True  # refused before any tree is built, as the exact path refuses it
            middle = time.perf_counter()
            try:
                exact = engine._analyze(source, engine.parse(needed), rules, (), needed)
            except SourceError:
                exact = []
            light_time += middle - start
            exact_time += time.perf_counter() - middle
            modules += 1
            if exact and not light:
                misses.append(f"{path}: {', '.join(f'{f.code}:{f.start.line}' for f in exact)}")
            elif light and not exact:
                extra += 1
    for miss in misses:
        print("MISS", miss)
    print(
        f"{modules} modules: {len(misses)} missed by the light tree, {extra} light candidates without a "
        f"finding; light decision {light_time:.2f} s, exact analysis {exact_time:.2f} s"
    )
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
