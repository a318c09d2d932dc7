"""Do tapefix's safe fixes keep a tree's programs behaving as before? Run them and see.

For every ``.py`` program under ``--tree`` (e.g. a folder of snippets), each safe fix tapefix offers is
applied alone, and the program runs before and after under TensorFlow (``tests/safe_fix_child.py``:
the same seeds, one namespace each). A safe fix passes when the fixed program raises nothing new and
every module-level name bound to a number, array or tensor keeps its dtype, shape and values (to 1e-5
for a fix whose contract allows rounding). Programs that already raised are judged only on raising
nothing new before that point. Prints one line per fix that did not pass and a summary.

    python benchmarks/safe_fixes_on_tree.py --tree ../shared/blogbench/snippets
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tapefix import Config, check_source  # noqa: E402
from tapefix.engine import apply_edits  # noqa: E402
from tapefix.types import Forward, Safety, SourceError  # noqa: E402

#: runs the pairs with the programs' own output kept out of the JSON answer
RUNNER = """\
import json, sys, contextlib, io
sys.path.insert(0, {tests!r})
import safe_fix_child
pairs = json.load(open({inp!r}))
out = {{}}
for key, before, after in pairs:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        out[key] = {{"before": safe_fix_child.run(before), "after": safe_fix_child.run(after)}}
json.dump(out, open({res!r}, "w"))
"""


def safe_fixes(tree: Path) -> List[Tuple[str, str, str, Forward]]:
    out = []
    for path in sorted(tree.rglob("*.py")):
        try:
            code = path.read_text()
            findings = check_source(code, Config(unsafe_fixes=True))
        except (UnicodeDecodeError, SourceError):
            continue
        for index, finding in enumerate(findings):
            if finding.fix is not None and finding.fix.safety is Safety.SAFE:
                key = f"{path.relative_to(tree)}:{finding.start.line}:{finding.code}:{index}"
                out.append((key, code, apply_edits(code, finding.fix.edits), finding.fix.forward))
    return out


def run(pairs: List[Tuple[str, str, str]], timeout: float) -> Dict[str, dict]:
    """The pairs in TensorFlow processes of 8; the pairs of a batch that hangs run again one by one, and
    one that hangs alone is marked "timeout"."""
    results: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:

        def batch_run(batch: List[Tuple[str, str, str]]) -> bool:
            inp, res = Path(folder, "in.json"), Path(folder, "out.json")
            inp.write_text(json.dumps(batch))
            res.unlink(missing_ok=True)
            script = RUNNER.format(tests=str(ROOT / "tests"), inp=str(inp), res=str(res))
            try:
                subprocess.run([sys.executable, "-c", script], timeout=timeout, capture_output=True, cwd=folder)
            except subprocess.TimeoutExpired:
                return False
            results.update(json.loads(res.read_text()) if res.exists() else {})
            return True

        for start in range(0, len(pairs), 8):
            batch = pairs[start : start + 8]
            if not batch_run(batch) and len(batch) > 1:
                for pair in batch:
                    batch_run([pair])
            for key, _, _ in batch:
                results.setdefault(key, {"timeout": True})
    return results


def _close(a: list, b: list, forward: Forward) -> bool:
    if forward in (Forward.EXACT, Forward.STRAIGHT_THROUGH):
        return a == b
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7))
        for x, y in zip(a, b)
    )


def judge(ran: dict, forward: Forward) -> str:
    """ "" when the fix kept the program's behaviour, else what changed."""
    if ran.get("timeout"):
        return "timeout"
    before, after = ran["before"], ran["after"]
    if before["error"] is not None:
        if after["error"] in (None, before["error"]) or "gradient" in before["error"].lower():
            return ""
        return f"raised differently: {before['error']} -> {after['error']}"
    if after["error"] is not None:
        return f"now raises {after['error']}"
    for name, value in before["values"].items():
        new = after["values"].get(name)
        if new is None:
            return f"{name} no longer bound to a value"
        if new["dtype"] != value["dtype"] or new["shape"] != value["shape"]:
            return f"{name}: {value['dtype']}{value['shape']} -> {new['dtype']}{new['shape']}"
        if not _close(value["values"], new["values"], forward):
            return f"{name}: values changed"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per batch of programs")
    args = parser.parse_args()
    fixes = safe_fixes(args.tree)
    ran = run([(key, before, after) for key, before, after, _ in fixes], args.timeout)
    kept = timeouts = 0
    codes: Dict[str, int] = {}
    for key, _, _, forward in fixes:
        problem = judge(ran[key], forward)
        codes[key.split(":")[2]] = codes.get(key.split(":")[2], 0) + 1
        if problem == "timeout":
            print(f"TIMEOUT  {key}")
            timeouts += 1
        elif problem:
            print(f"CHANGED  {key}: {problem}")
        else:
            kept += 1
    by_code = ", ".join(f"{code} {count}" for code, count in sorted(codes.items()))
    print(
        f"safe fixes: {len(fixes)} ({by_code}); kept the program's behaviour: {kept}; "
        f"changed it: {len(fixes) - kept - timeouts}; timed out: {timeouts}"
    )
    return 0 if kept + timeouts == len(fixes) else 1


if __name__ == "__main__":
    sys.exit(main())
