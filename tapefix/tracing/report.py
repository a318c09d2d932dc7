"""Reports of a traced run: the static rules' fixes for the lines it names, and text, JSON and SARIF output.
No TensorFlow here."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

from tapefix import __version__
from tapefix.tracing.model import Diagnostic, GradientCall


class StaticFixes:
    """The static checker's findings for the files a trace names, read once per file."""

    def __init__(self) -> None:
        self._findings: Dict[str, List[Any]] = {}

    def findings(self, path: str) -> List[Any]:
        if path not in self._findings:
            self._findings[path] = []
            if os.path.isfile(path) and path.endswith(".py"):
                try:
                    from tapefix.engine import check_source

                    with open(path, encoding="utf-8") as handle:
                        self._findings[path] = check_source(handle.read())
                except Exception:  # noqa: BLE001 - a file the scanner cannot read just has no fix to show
                    pass
        return self._findings[path]

    def on_line(self, path: str, line: int, function: str = "") -> List[Any]:
        found = [f for f in self.findings(path) if f.start.line <= line <= f.end.line]
        if found or not function.isidentifier():
            return found
        # a function of a module with no tape of its own (losses.py): checked as the tape runs it
        key = f"{path}::{function}"
        if key not in self._findings:
            self._findings[key] = []
            try:
                from tapefix.engine import check_source
                from tapefix.types import Config, EntryPoint

                with open(path, encoding="utf-8") as handle:
                    source = handle.read()
                self._findings[key] = check_source(source, Config(), [EntryPoint(function, (True,) * 8)])
            except Exception:  # noqa: BLE001
                pass
        return [f for f in self._findings[key] if f.start.line <= line <= f.end.line]

    def attach(self, diagnostic: Diagnostic) -> None:
        """Adds the static fix for the diagnostic's line, and the rule code when the trace has none."""
        found = self.on_line(diagnostic.place.path, diagnostic.place.line, diagnostic.place.function)
        with_fix = [f for f in found if f.fix is not None]
        chosen = next((f for f in with_fix if f.code == diagnostic.code), None) or (with_fix[0] if with_fix else None)
        if chosen is None and found:
            chosen = next((f for f in found if f.code == diagnostic.code), found[0])
        if chosen is None:
            return
        # a plain cause takes the rule's code, unless it is only the gradient call itself, where the
        # rule may be about something else on that line
        call = diagnostic.gradient_at
        at_call = call is not None and (diagnostic.place.path, diagnostic.place.line) == (call.path, call.line)
        if not diagnostic.code and not at_call:
            diagnostic.code = chosen.code
        if chosen.fix is not None:
            diagnostic.fix = f"{chosen.code}: {chosen.fix.description}"
            diagnostic.fix_safety = chosen.fix.safety.value
        if chosen.code != diagnostic.code:
            diagnostic.explanation.append(f"the static checker reports {chosen.code} here: {chosen.message}")


def diagnostics(calls: Sequence[GradientCall]) -> List[Diagnostic]:
    return [d for call in calls for d in call.diagnostics]


def exit_code(calls: Sequence[GradientCall], failed: bool) -> int:
    """0: every gradient present and finite; 1: something was explained; 2: the program failed before
    any gradient call."""
    if not calls:
        return 2 if failed else 0
    return 0 if all(c.ok for c in calls) else 1


def summary(calls: Sequence[GradientCall], failed: bool) -> str:
    if not calls:
        return "the program failed before any gradient call" if failed else "no gradient call was made"
    bad = [c for c in calls if not c.ok]
    noun = "call" if len(calls) == 1 else "calls"
    if not bad:
        return f"{len(calls)} gradient {noun} traced: every gradient present and finite"
    nones = sum(1 for c in bad if any(s.status == "none" for s in c.sources))
    nans = sum(1 for c in bad if any(s.status == "nonfinite" for s in c.sources))
    raised = sum(1 for c in bad if c.error)
    parts = [f"{n} {what}" for n, what in ((nones, "with None"), (nans, "not finite"), (raised, "raised")) if n]
    return f"{len(calls)} gradient {noun} traced: {', '.join(parts)}"


def render_text(calls: Sequence[GradientCall], failed: bool, notes: Sequence[str] = ()) -> str:
    lines: List[str] = list(notes)
    seen = set()
    for call in calls:
        for d in call.diagnostics:
            key = (d.place, d.code, d.message, d.sources)
            if key in seen:
                continue
            seen.add(key)
            code = f"{d.code} " if d.code else ""
            lines.append(f"{d.place.label()}: {code}{d.message}")
            lines.extend(f"    {line}" for line in d.explanation)
            if d.fix:
                lines.append(f"    fix ({d.fix_safety}) {d.fix}")
    lines.append(summary(calls, failed))
    return "\n".join(lines) + "\n"


def _call_record(call: GradientCall) -> Dict[str, Any]:
    return {
        "index": call.index,
        "kind": call.kind,
        "mode": call.mode,
        "path": call.place.path if call.place else None,
        "line": call.place.line if call.place else None,
        "target": call.target,
        "error": call.error or None,
        "sources": [{"name": s.name, "status": s.status, "norm": s.norm} for s in call.sources],
    }


def _diagnostic_record(d: Diagnostic) -> Dict[str, Any]:
    record: Dict[str, Any] = {
        "code": d.code or None,
        "message": d.message,
        "path": d.place.path,
        "line": d.place.line,
        "column": d.place.column,
        "text": d.place.text,
        "explains": d.kind,
        "target": d.target,
        "sources": list(d.sources),
        "explanation": d.explanation,
    }
    if d.gradient_at is not None:
        record["gradient_call"] = {"path": d.gradient_at.path, "line": d.gradient_at.line}
    if d.library is not None:
        record["library"] = {
            "path": d.library.path,
            "line": d.library.line,
            "column": d.library.column,
            "text": d.library.text,
        }
    if d.fix:
        record["fix"] = {"description": d.fix, "safety": d.fix_safety}
    return record


def to_json(
    calls: Sequence[GradientCall],
    failed: bool,
    notes: Sequence[str] = (),
    after: Optional[Sequence[GradientCall]] = None,
) -> str:
    out: Dict[str, Any] = {
        "version": __version__,
        "tool": "tapefix-trace",
        "notes": list(notes),
        "gradient_calls": [_call_record(c) for c in calls],
        "diagnostics": [_diagnostic_record(d) for d in diagnostics(calls)],
        "summary": summary(calls, failed),
        "exit_code": exit_code(calls, failed),
    }
    if after is not None:
        out["after_fix"] = [_call_record(c) for c in after]
    return json.dumps(out, indent=2) + "\n"


def to_sarif(calls: Sequence[GradientCall], failed: bool) -> str:
    from tapefix.formats import SARIF_SCHEMA, _rules, _sarif_rule, _uri

    found = diagnostics(calls)
    codes = sorted({d.code for d in found if d.code})
    rules = [_sarif_rule(rule) for rule in _rules() if rule.CODE in codes]
    results = []
    for d in found:
        result: Dict[str, Any] = {
            "ruleId": d.code or "trace",
            "level": "error",
            "message": {"text": " ".join([d.message, *d.explanation])},
            "locations": [_location(d.place.path, d.place.line, d.place.column, _uri)],
        }
        related = []
        if d.library is not None:
            related.append(_location(d.library.path, d.library.line, d.library.column, _uri, "inside the library"))
        if d.gradient_at is not None:
            related.append(
                _location(d.gradient_at.path, d.gradient_at.line, d.gradient_at.column, _uri, "the gradient call")
            )
        if related:
            for index, location in enumerate(related):
                location["id"] = index
            result["relatedLocations"] = related
        results.append(result)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tapefix-trace",
                        "version": __version__,
                        "informationUri": "https://github.com/tapefix/tapefix",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def _location(path: str, line: int, column: int, uri: Any, message: str = "") -> Dict[str, Any]:
    location: Dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {"uri": uri(path)},
            "region": {"startLine": line, "startColumn": column},
        }
    }
    if message:
        location["message"] = {"text": message}
    return location
