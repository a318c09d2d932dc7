"""Turning results into text for people: finding lines, verdicts and the summary line."""

from __future__ import annotations

import os
from typing import Iterable, List, Optional, Tuple

import click

from tapefix.api import FileResult, Mode
from tapefix.notebook import Script
from tapefix.types import Finding, Outcome, Safety, Status


def display_path(path: str) -> str:
    """``path`` relative to the current folder when it lies under it; otherwise as an absolute path."""
    if path == "-":
        return path
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, os.getcwd())
    except ValueError:  # another drive on Windows
        return absolute
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def locate(notebook: Optional[Script], line: int) -> Tuple[Optional[int], int]:
    """(cell, line) for a line of a result's source: the cell is None outside notebooks."""
    if notebook is None:
        return None, line
    return notebook.locate(line)


def where(path: str, finding: Finding, notebook: Optional[Script] = None) -> str:
    """``path:line:col`` (columns 1-based), or ``path:cell N:line:col`` in a notebook."""
    cell, line = locate(notebook, finding.start.line)
    cell_part = f"cell {cell}:" if cell is not None else ""
    return f"{path}:{cell_part}{line}:{finding.start.column + 1}"


def status_label(outcome: Outcome, mode: Mode, unsafe_fixes: bool) -> str:
    finding = outcome.finding
    verdict = outcome.verdict
    verdict_text = ""
    if verdict is not None and verdict.passed:
        level = f" on the {verdict.level}" if verdict.level else ""
        verdict_text = f"verified{level}: {verdict.reason}"
    if verdict is not None and verdict.status == "unverified":
        verdict_text = f"unverified: {verdict.reason}"
    if outcome.status is Status.FIXED:
        assert finding.fix is not None
        unsafe = "unsafe " if finding.fix.safety is Safety.UNSAFE else ""
        label = f"{unsafe}fixed".strip() if mode is Mode.FIX else f"{unsafe}fix shown in diff"
        label = label if mode is not Mode.FIX or not unsafe else "fixed (unsafe fix)"
    elif outcome.status is Status.REJECTED:
        reason = verdict.reason if verdict is not None else "the fix did not hold"
        if verdict is not None and verdict.status == "unverified":
            # Unverified is not a pass: under --verify only verified fixes are applied.
            return f"[not applied: unverified: {reason}]"
        return f"[not applied: verification failed: {reason}]"
    elif outcome.status is Status.FIXABLE:
        assert finding.fix is not None
        if finding.fix.safety is Safety.UNSAFE and not unsafe_fixes:
            label = "unsafe fix available (--unsafe-fixes)"
        elif finding.fix.safety is Safety.UNSAFE:
            label = "unsafe fix available"
        else:
            label = "fix available"
    else:
        reason = finding.no_fix_reason or "no automatic fix"
        label = f"needs a human: {reason}"
    if finding.through_call and outcome.status is not Status.MANUAL:
        label += "; in a function reached through a call"
    return f"[{label}{', ' + verdict_text if verdict_text else ''}]"


def finding_line(
    path: str,
    outcome: Outcome,
    mode: Mode,
    unsafe_fixes: bool,
    *,
    notebook: Optional[Script] = None,
    color: bool = False,
) -> str:
    """One line per finding: ``path:line:col: CODE message  [what happened]``."""
    finding = outcome.finding
    label = status_label(outcome, mode, unsafe_fixes)
    place = where(path, finding, notebook)
    if not color:
        return f"{place}: {finding.code} {finding.message}  {label}"
    tint = {Status.FIXED: "green", Status.FIXABLE: "yellow", Status.REJECTED: "red", Status.MANUAL: "magenta"}
    return (
        f"{click.style(place, bold=True)}: {click.style(finding.code, fg='red', bold=True)} {finding.message}  "
        f"{click.style(label, fg=tint[outcome.status])}"
    )


def summary(results: Iterable[FileResult], mode: Mode, unsafe_fixes: bool) -> str:
    """One line: "3 fixed, 2 more fixes available with --unsafe-fixes, 1 needs a human"."""
    fixed = fixable = unsafe_more = manual = rejected = errors = files = 0
    for result in results:
        files += 1
        if result.error:
            errors += 1
        for outcome in result.outcomes:
            if outcome.status is Status.FIXED:
                fixed += 1
            elif outcome.status is Status.REJECTED:
                rejected += 1
            elif outcome.status is Status.MANUAL:
                manual += 1
            elif outcome.finding.fix is not None and outcome.finding.fix.safety is Safety.UNSAFE and not unsafe_fixes:
                unsafe_more += 1
            else:
                fixable += 1
    parts: List[str] = []
    if fixed:
        parts.append(f"{fixed} fixed" if mode is Mode.FIX else f"{fixed} {'fix' if fixed == 1 else 'fixes'} shown")
    if fixable:
        parts.append(f"{fixable} fixable" + (" with `tapefix PATH`" if mode is not Mode.FIX else ""))
    if unsafe_more:
        parts.append(f"{unsafe_more} more {'fix' if unsafe_more == 1 else 'fixes'} available with --unsafe-fixes")
    if rejected:
        parts.append(f"{rejected} not applied (not verified)")
    if manual:
        parts.append(f"{manual} {'needs' if manual == 1 else 'need'} a human")
    if errors:
        parts.append(f"{errors} {'file' if errors == 1 else 'files'} with errors")
    if not parts:
        return f"no gradient-breaking idioms found in {files} {'file' if files == 1 else 'files'}"
    return ", ".join(parts)
