"""How fast ``light_module`` (``ast.parse`` plus conversion) builds a tree, beside ``libcst.parse_module``.

    python benchmarks/bench_lighttree.py                          # keras-io, as unpacked in /tmp/realcode
    python benchmarks/bench_lighttree.py --tree PATH --repeat 5   # any tree
    python benchmarks/bench_lighttree.py --all                    # every file, not only GradientTape ones

For every ``.py`` file of the tree that mentions ``GradientTape`` (the files a check analyses in
depth), one process times ``libcst.parse_module(src)`` and ``light_module(src)`` on the same source,
and reports each total (the best of ``--repeat`` rounds), the ratio, and the bare ``ast.parse`` for
reference. A file ``light_module`` does not map (``Unsupported``) or ast rejects is left out of all
totals and counted.
"""

from __future__ import annotations

import argparse
import ast
import gc
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

import libcst

from tapefix.analysis.lighttree import Unsupported, light_module


def _files(tree: Path, everything: bool) -> List[Tuple[Path, str]]:
    out = []
    for path in sorted(tree.rglob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if everything or "GradientTape" in source:
            out.append((path, source))
    return out


def _total(sources: List[str], parse: Callable[[str], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        for source in sources:
            parse(source)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path("/tmp/realcode/kerasio"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--all", action="store_true", help="every .py file, not only those with GradientTape")
    args = parser.parse_args(argv)

    files = _files(args.tree, args.all)
    sources, skipped = [], []
    for path, source in files:
        try:
            libcst.parse_module(source)
            light_module(source)
        except (Unsupported, SyntaxError, libcst.ParserSyntaxError) as error:
            skipped.append((path, type(error).__name__))
            continue
        sources.append(source)
    lines = sum(source.count("\n") for source in sources)
    print(f"{args.tree}: {len(sources)} files, {lines} lines" + (f" ({len(skipped)} left out)" if skipped else ""))
    for path, reason in skipped:
        print(f"  left out: {path} ({reason})")

    heavy = _total(sources, libcst.parse_module, args.repeat)
    light = _total(sources, light_module, args.repeat)
    bare = _total(sources, ast.parse, args.repeat)
    print(f"libcst.parse_module  {heavy:8.3f} s")
    print(f"light_module         {light:8.3f} s   ({light / heavy:.3f} of libcst, {heavy / light:.1f}x faster)")
    print(f"  of which ast.parse {bare:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
