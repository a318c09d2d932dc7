"""Fuzz real tape files with hostile layouts and depths: count crashes and wrong positions.

    python benchmarks/fuzz_hostile.py                 # the corpus and the installed TensorFlow/Keras tape files
    python benchmarks/fuzz_hostile.py TREE ... --mutants 20 --seed 3

Each file holding a ``GradientTape`` is mutated in ways that keep its program (CPython's AST is
unchanged): lines holding only a backslash, blank, comment and form-feed lines before statements, and
CR-only or CRLF line ends. The findings of a mutant must be those of the file (same rule, same text at
the reported range, same fix), and every reported line and column must be where that text is. Other
mutants nest an expression deeply (a sum of 10,000 terms, 3,000 nested calls, a moderate 300-term sum):
they must give findings or one clear ``SourceError``, never a crash. Applying the fixes must give code
that parses. The report counts files, mutants, crashes and wrong positions; the exit code is 1 when
either count is not 0. ``tests/test_fuzz_hostile.py`` runs a small sample of this in the suite.
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tapefix import engine  # noqa: E402
from tapefix.types import Config, Finding, SourceError  # noqa: E402

CONFIG = Config(unsafe_fixes=True)
BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class Report:
    files: int = 0
    mutants: int = 0
    refused: int = 0  #: mutants reported as one clear SourceError
    crashes: List[str] = field(default_factory=list)
    wrong_positions: List[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.files} files, {self.mutants} mutants ({self.refused} refused with a clear error): "
            f"{len(self.crashes)} crashes, {len(self.wrong_positions)} wrong positions"
        )


def tape_files(paths: Iterable[Path], limit: int) -> List[Path]:
    found: List[Path] = []
    for path in paths:
        candidates = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for candidate in candidates:
            try:
                text = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if "GradientTape" in text and _parses(text):
                found.append(candidate)
            if len(found) >= limit:
                return found
    return found


def default_paths() -> List[Path]:
    paths = [ROOT / "corpus"]
    for name in ("keras", "tensorflow/python/keras", "tf_keras"):
        for entry in sys.path:
            candidate = Path(entry) / name
            if candidate.is_dir():
                paths.append(candidate)
                break
    return paths


# ---------------------------------------------------------------------------- mutations that keep the program
def _statement_lines(text: str) -> List[int]:
    tree = ast.parse(text)
    return sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.stmt)})


def layout_mutant(text: str, rng: random.Random) -> str:
    """``text`` with odd lines before a few statements and, sometimes, other line ends."""
    lines = text.splitlines(keepends=True)
    statements = _statement_lines(text)
    chosen = sorted(rng.sample(statements, min(len(statements), rng.randint(1, 6))), reverse=True)
    for number in chosen:
        target = lines[number - 1]
        indent = target[: len(target) - len(target.lstrip(" \t"))]
        kind = rng.choice(["backslash", "backslash-column-0", "blank", "comment", "form-feed", "two-backslashes"])
        inserted = {
            "backslash": [indent + "\\\n"],
            "backslash-column-0": ["\\\n"],
            "blank": ["\n"],
            "comment": [indent + "# tapefix fuzz \\\n"],
            "form-feed": ["\f\n"],
            "two-backslashes": [indent + "\\\n", indent + "\\\n"],
        }[kind]
        lines[number - 1 : number - 1] = inserted
    mutant = "".join(lines)
    newline = rng.choice(["\n", "\n", "\r\n", "\r"])
    if newline != "\n":
        mutant = mutant.replace("\r\n", "\n").replace("\n", newline)
    return mutant


def same_program(a: str, b: str) -> bool:
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


# ---------------------------------------------------------------------------- deep mutants
DEEP: Sequence[Tuple[str, Callable[[], str]]] = (
    ("sum-10000", lambda: " + ".join(["x"] * 10_000)),
    ("calls-3000", lambda: "f(" * 3000 + "x" + ")" * 3000),
    ("unary-6000", lambda: "-" * 6000 + "x"),
    ("attributes-5000", lambda: "x" + ".a" * 5000),
    ("sum-300", lambda: " + ".join(["x"] * 300)),
)


def deep_mutant(text: str, rng: random.Random) -> Tuple[str, str]:
    name, make = rng.choice(DEEP)
    lines = text.splitlines(keepends=True)
    number = rng.choice(_statement_lines(text))
    target = lines[number - 1]
    indent = target[: len(target) - len(target.lstrip(" \t"))]
    lines.insert(number - 1, f"{indent}deep_fuzz = {make()}\n")
    return name, "".join(lines)


# ---------------------------------------------------------------------------- the oracle
#: a comment line a fix carries over (``# note`` and the indentation of the line after it)
KEPT_COMMENT = re.compile(r"#[^\n]*\n[ \t]*")


def _signature(source: str, finding: Finding) -> Tuple[str, str]:
    """What a finding is, wherever it lies: its rule and the text at its range."""
    return finding.code, BREAK.sub("\n", source[finding.start_offset : finding.end_offset])


def _fix_problems(text: str, source: str, expected: Sequence[Finding], got: Sequence[Finding]) -> List[str]:
    """A fix offered on both sides must write the same text (line ends aside); a mutant may lose a fix
    (a rule stays timid around an odd line inside what it would rewrite), never gain a different one."""
    wanted = {_signature(text, f): f for f in expected}
    problems = []
    for finding in got:
        other = wanted.get(_signature(source, finding))
        if other is None or other.fix is None or finding.fix is None:
            continue
        # Comments the fix keeps from the code it replaces are the user's own (a layout mutant adds some).
        mine = [KEPT_COMMENT.sub("", BREAK.sub("\n", e.text)) for e in finding.fix.edits]
        theirs = [KEPT_COMMENT.sub("", BREAK.sub("\n", e.text)) for e in other.fix.edits]
        if mine != theirs:
            problems.append(f"{finding.code}'s fix differs from the unmutated file's: {mine} vs {theirs}")
    return problems


def _position_problems(source: str, findings: Sequence[Finding]) -> List[str]:
    starts = [0, *(m.end() for m in BREAK.finditer(source))]
    problems = []
    for finding in findings:
        line, column = finding.start.line, finding.start.column
        if not 1 <= line <= len(starts) or starts[line - 1] + column != finding.start_offset:
            problems.append(f"{finding.code} at {line}:{column + 1} is not at offset {finding.start_offset}")
    return problems


def check_one(path: str, text: str, rng: random.Random, report: Report, layouts: int, deeps: int) -> None:
    try:
        original = engine.check_source(text, CONFIG)
    except SourceError:
        return
    expected = sorted(_signature(text, f) for f in original)
    report.files += 1
    for _ in range(layouts):
        mutant = layout_mutant(text, rng)
        if not same_program(text, mutant):
            continue
        report.mutants += 1
        try:
            findings = engine.check_source(mutant, CONFIG)
            fixed = engine.fix_source(mutant, CONFIG).fixed_source
        except SourceError:
            report.refused += 1
            continue
        except Exception:  # noqa: BLE001 - counting crashes is the point
            report.crashes.append(f"{path} (layout): {traceback.format_exc(limit=3)}")
            continue
        got = sorted(_signature(mutant, f) for f in findings)
        problems = _position_problems(mutant, findings)
        if got != expected:
            problems.append(f"findings differ from the unmutated file's: {got} vs {expected}")
        problems += _fix_problems(text, mutant, original, findings)
        if not _parses(fixed):
            problems.append("the fixed mutant does not parse")
        report.wrong_positions.extend(f"{path} (layout): {p}" for p in problems)
    for _ in range(deeps):
        name, mutant = deep_mutant(text, rng)
        report.mutants += 1
        try:
            findings = engine.check_source(mutant, CONFIG)
        except SourceError:
            report.refused += 1
            continue
        except RecursionError:
            report.refused += 1  # tapefix.api reports it as "nested too deeply": one file's error
            continue
        except Exception:  # noqa: BLE001
            report.crashes.append(f"{path} ({name}): {traceback.format_exc(limit=3)}")
            continue
        report.wrong_positions.extend(f"{path} ({name}): {p}" for p in _position_problems(mutant, findings))


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def run(paths: Sequence[Path], mutants: int, seed: int, limit: int, deeps: int = 2) -> Report:
    rng = random.Random(seed)
    report = Report()
    for path in tape_files(paths, limit):
        check_one(str(path), path.read_text(encoding="utf-8"), rng, report, mutants, deeps)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--mutants", type=int, default=10, help="layout mutants per file")
    parser.add_argument("--deep", type=int, default=2, help="deep mutants per file")
    parser.add_argument("--files", type=int, default=60, help="at most this many tape files")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    report = run(options.paths or default_paths(), options.mutants, options.seed, options.files, options.deep)
    for problem in (report.crashes + report.wrong_positions)[:20]:
        print(problem)
    print(report.line())
    return 1 if report.crashes or report.wrong_positions else 0


if __name__ == "__main__":
    raise SystemExit(main())
