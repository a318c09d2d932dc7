"""``tapefix-trace SCRIPT [ARGS...]``: run a program as ``python SCRIPT ARGS`` would and explain every
gradient that comes back None, NaN or inf, or raises.

Exit codes: 0 every gradient present and finite; 1 something was explained; 2 the program failed before
any gradient call (its traceback is shown as Python would show it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import traceback
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from tapefix.tracing.model import GradientCall, SourceResult

if TYPE_CHECKING:
    from tapefix.tracing import Trace
from tapefix.tracing.report import StaticFixes, render_text, to_json, to_sarif

DEFAULT_STEPS = 10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tapefix-trace",
        description="Run a TensorFlow program and explain, at the line that caused it, every gradient that "
        "comes back None, NaN or inf.",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"stop after this many gradient calls (default {DEFAULT_STEPS}; 0: run to the end)",
    )
    parser.add_argument(
        "--eager", action="store_true", help="run tf.functions eagerly, so breaks inside them are visible"
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="apply the static fixes for the reported lines to copies, run the copies the same "
        "way, and print the gradients before and after (the originals are never written)",
    )
    parser.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    parser.add_argument("--user-root", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--extra-path", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = _parser().parse_args(argv)
    script = os.path.abspath(options.script)
    if not os.path.isfile(script):
        print(f"tapefix-trace: {options.script}: no such file", file=sys.stderr)
        return 2
    roots = options.user_root or [os.path.dirname(script)]
    steps = options.steps if options.steps > 0 else None
    result, failed = _run(
        script, options.args, roots, steps, options.eager, options.extra_path, quiet_stdout=options.format != "text"
    )
    code: int = result.exit_code
    after: Optional[List[GradientCall]] = None
    fix_notes: List[str] = []
    if options.fix:
        after, fix_notes = _fix_and_rerun(script, options, result.calls, roots)
    if options.format == "json":
        sys.stdout.write(to_json(result.calls, failed, [*result.notes, *fix_notes], after))
    elif options.format == "sarif":
        sys.stdout.write(to_sarif(result.calls, failed))
    else:
        sys.stdout.write(render_text(result.calls, failed, result.notes))
        if fix_notes:
            sys.stdout.write("".join(f"{note}\n" for note in fix_notes))
        if after is not None:
            sys.stdout.write(_before_after(result.calls, after))
    sys.stdout.flush()
    return code


def _run(
    script: str,
    args: Sequence[str],
    roots: Sequence[str],
    steps: Optional[int],
    eager: bool,
    extra_path: Sequence[str],
    quiet_stdout: bool,
) -> Tuple[Trace, bool]:
    from tapefix.tracing import trace

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script, *args]
    sys.path[0:1] = [os.path.dirname(script)]
    sys.path.extend(extra_path)
    saved_fd, saved_stdout = None, sys.stdout
    if quiet_stdout:  # the report owns stdout: the program's output goes to stderr
        sys.stdout.flush()
        saved_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    failed = False
    outcome = None
    try:
        with trace(eager=eager, roots=roots, steps=steps, report=io.StringIO()) as outcome:
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit as stop:
                if stop.code not in (None, 0):
                    _show_traceback(stop, script)
                    failed = True
            except Exception as error:  # noqa: BLE001 - the program's own failure, shown as Python shows it
                _show_traceback(error, script)
                failed = True
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if saved_fd is not None:
            sys.stdout = saved_stdout
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        sys.argv, sys.path[:] = saved_argv, saved_path
    assert outcome is not None
    outcome.failed = failed and not outcome.calls
    if eager:
        outcome.notes[:] = ["note: tf.function bodies ran eagerly (--eager), so breaks inside them are visible"]
    return outcome, outcome.failed


def _show_traceback(error: BaseException, script: str) -> None:
    if isinstance(error, SystemExit):
        if isinstance(error.code, str):
            print(error.code, file=sys.stderr)
        return
    tb = error.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb or error.__traceback__, file=sys.stderr)


# -- --fix -------------------------------------------------------------------------------------------------


def _fixed_sources(calls: Sequence[GradientCall]) -> Tuple[Dict[str, str], List[str]]:
    """The user files the reported lines are in, with the static fixes for those lines applied."""
    from tapefix.engine import apply_edits

    static = StaticFixes()
    chosen: Dict[str, List[object]] = {}
    for call in calls:
        for diagnostic in call.diagnostics:
            path = os.path.abspath(diagnostic.place.path)
            if not os.path.isfile(path):
                continue
            for finding in static.on_line(path, diagnostic.place.line, diagnostic.place.function):
                if finding.fix is not None and finding not in chosen.setdefault(path, []):
                    chosen[path].append(finding)
    fixed: Dict[str, str] = {}
    notes: List[str] = []
    for path, findings in chosen.items():
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        edits: List[object] = []
        taken: List[Tuple[int, int]] = []
        for finding in findings:
            spans = [(e.start, e.end) for e in finding.fix.edits]  # type: ignore[attr-defined]
            if any(s < te and ts < e for s, e in spans for ts, te in taken):
                continue
            taken.extend(spans)
            edits.extend(finding.fix.edits)  # type: ignore[attr-defined]
            notes.append(
                f"fix applied to the copy: {os.path.relpath(path)}:{finding.start.line}: "  # type: ignore[attr-defined]
                f"{finding.code} {finding.fix.description} ({finding.fix.safety.value})"  # type: ignore[attr-defined]
            )
        if edits:
            fixed[path] = apply_edits(source, edits)  # type: ignore[arg-type]
    return fixed, notes


def _fix_and_rerun(
    script: str, options: argparse.Namespace, calls: Sequence[GradientCall], roots: Sequence[str]
) -> Tuple[Optional[List[GradientCall]], List[str]]:
    fixed, notes = _fixed_sources(calls)
    if not fixed:
        return None, ["--fix: the static rules have no fix for the reported lines; nothing was run again"]
    base = os.path.dirname(script)
    with tempfile.TemporaryDirectory(prefix="tapefix-trace-") as copy_root:
        copies = {}
        for path in set(fixed) | {script}:
            relative = os.path.relpath(path, base)
            if relative.startswith(".."):
                relative = os.path.join("_outside", os.path.basename(path))
            destination = os.path.join(copy_root, relative)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            if path in fixed:
                with open(destination, "w", encoding="utf-8") as handle:
                    handle.write(fixed[path])
            else:
                shutil.copyfile(path, destination)
            copies[path] = destination
        command = [sys.executable, "-m", "tapefix.tracing.cli", "--format", "json", "--steps", str(options.steps)]
        if options.eager:
            command.append("--eager")
        for root in [copy_root, *roots]:
            command += ["--user-root", root]
        command += ["--extra-path", base, copies[script], *options.args]
        run = subprocess.run(command, capture_output=True, text=True, cwd=os.getcwd())
        try:
            report = json.loads(run.stdout)
        except ValueError:
            return None, [*notes, "--fix: the fixed copy did not run: " + run.stderr.strip()[-500:]]
    after = [
        GradientCall(
            c["index"],
            c["kind"],
            None,
            c["target"],
            [SourceResult(s["name"], s["status"], s["norm"]) for s in c["sources"]],
            c["mode"],
            c["error"] or "",
        )
        for c in report["gradient_calls"]
    ]
    return after, notes


def _describe(source: Optional[SourceResult]) -> str:
    if source is None:
        return "-"
    if source.status == "present":
        return f"present, finite, norm {source.norm:.4g}" if source.norm is not None else "present"
    return {"none": "None", "nonfinite": "present, not finite", "raised": "raised"}.get(source.status, source.status)


def _before_after(before: Sequence[GradientCall], after: Sequence[GradientCall]) -> str:
    lines = ["gradients before and after the fixes (per source):"]
    for index, call in enumerate(before):
        other = after[index] if index < len(after) else None
        at = call.place.label() if call.place else "?"
        lines.append(f"  call {call.index}: {call.kind} of `{call.target}` at {at}")
        fixed_sources = {s.name: s for s in other.sources} if other else {}
        for source in call.sources:
            lines.append(f"    {source.name}: {_describe(source)} -> {_describe(fixed_sources.get(source.name))}")
        if other is not None and other.error:
            lines.append(f"    after: raised {other.error}")
    if len(after) > len(before):
        lines.append(f"  the fixed copy made {len(after) - len(before)} more gradient call(s)")
    return "\n".join(lines) + "\n"


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
