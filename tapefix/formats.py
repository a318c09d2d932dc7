"""Machine-readable reports: ``--format json``, ``sarif`` (2.1.0, as GitHub code scanning takes it)
and ``github`` (workflow command annotations). The text format lives in :mod:`tapefix.output`.

Lines and columns are 1-based everywhere here. In a notebook, JSON gives lines counted from the top
of the cell and names the cell; SARIF and GitHub annotations point into the notebook file itself
(the line of its JSON that holds the code) and name the cell in the message.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Type

from tapefix import __version__
from tapefix.api import FileResult, Mode
from tapefix.layout import line_starts
from tapefix.output import display_path, locate, status_label
from tapefix.types import Config, Edit, Finding, Outcome, applicable

if TYPE_CHECKING:
    from tapefix.rule import Rule  # libcst: only the SARIF rule table needs the rules

FORMATS = ("text", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _line_starts(text: str) -> List[int]:
    return line_starts(text)  # CR-only and CRLF lines counted as the rest of tapefix counts them


class _Positions:
    """Code-point offsets of one source to 1-based (cell, line, column)."""

    def __init__(self, result: FileResult) -> None:
        self.result = result
        self.starts = _line_starts(result.source)

    def at(self, offset: int) -> Dict[str, Any]:
        offset = max(0, min(offset, len(self.result.source)))
        low, high = 0, len(self.starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        cell, line = locate(self.result.notebook, low + 1)
        place: Dict[str, Any] = {"line": line, "column": offset - self.starts[low] + 1}
        if cell is not None:
            place["cell"] = cell
        return place


def _place(result: FileResult, line: int, column: int) -> Dict[str, Any]:
    cell, cell_line = locate(result.notebook, line)
    place: Dict[str, Any] = {"line": cell_line, "column": column + 1}
    if cell is not None:
        place["cell"] = cell
    return place


def _edit(positions: _Positions, edit: Edit) -> Dict[str, Any]:
    return {"start": positions.at(edit.start), "end": positions.at(edit.end), "content": edit.text}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def finding_record(
    result: FileResult, outcome: Outcome, mode: Mode, config: Config, positions: _Positions
) -> Dict[str, Any]:
    """Everything about one finding, as plain JSON values."""
    finding = outcome.finding
    fix = finding.fix
    cell, _ = locate(result.notebook, finding.start.line)
    return {
        "file": display_path(result.path),
        "cell": cell,
        "code": finding.code,
        "message": finding.message,
        "range": {
            "start": _place(result, finding.start.line, finding.start.column),
            "end": _place(result, finding.end.line, finding.end.column),
        },
        "status": outcome.status.value,
        "label": status_label(outcome, mode, config.unsafe_fixes).strip("[]"),
        "through_call": finding.through_call,
        "fix": None
        if fix is None
        else {
            "safety": fix.safety.value,
            "forward": fix.forward.value,
            "description": fix.description,
            "applicable": applicable(finding, config),
            "edits": [_edit(positions, edit) for edit in fix.edits],
        },
        "no_fix_reason": finding.no_fix_reason or None,
        # The verifier may grow Verdict; serialise whatever fields it has.
        "verdict": _jsonable(outcome.verdict) if outcome.verdict is not None else None,
    }


def _error_record(result: FileResult) -> Dict[str, Any]:
    return {"file": display_path(result.path), "location": result.error_at or None, "message": result.error}


def to_json(results: Sequence[FileResult], mode: Mode, config: Config) -> str:
    """``{"version", "findings": [...], "errors": [...]}``, findings in file order."""
    findings: List[Dict[str, Any]] = []
    for result in results:
        if result.error:
            continue
        positions = _Positions(result)
        findings.extend(finding_record(result, outcome, mode, config, positions) for outcome in result.outcomes)
    document = {
        "tool": "tapefix",
        "version": __version__,
        "mode": mode.value,
        "findings": findings,
        "errors": [_error_record(r) for r in results if r.error],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- SARIF
def _rules() -> List[Type[Rule]]:
    from tapefix.rules import ALL_RULES

    return list(ALL_RULES)


def _sarif_rule(rule: Type[Rule]) -> Dict[str, Any]:
    from tapefix.ruledocs import render

    return {
        "id": rule.CODE,
        "name": rule.NAME,
        "shortDescription": {"text": rule.MESSAGE},
        "fullDescription": {"text": rule.MESSAGE},
        "help": {"text": render(rule), "markdown": render(rule)},
        "defaultConfiguration": {"level": "error"},
        "properties": {
            "tags": ["tensorflow", "gradient", "correctness"],
            "fix": "yes" if rule.has_fix() else "report only",
            "fixSafety": rule.SAFETY.value,
        },
    }


def _uri(path: str) -> str:
    shown = display_path(path).replace("\\", "/")
    if shown.startswith("/"):
        return "file://" + shown
    return shown


def file_range(result: FileResult, finding: Finding) -> Tuple[int, int, int, int]:
    """(start line, start column, end line, end column), 1-based, in the file as stored: for a notebook,
    lines and columns of its JSON text (where the cell's source string holds the code), so that
    annotations land on the right line; cell-relative when the notebook's layout is unknown."""
    notebook = result.notebook
    if notebook is not None:
        start = notebook.in_file(finding.start.line, finding.start.column)
        end = notebook.in_file(finding.end.line, finding.end.column)
        if start is not None and end is not None:
            return start[0], start[1], end[0], end[1]
    _, first = locate(notebook, finding.start.line)
    _, last = locate(notebook, finding.end.line)
    return first, finding.start.column + 1, last, finding.end.column + 1


def _region(result: FileResult, finding: Finding) -> Dict[str, int]:
    first, first_column, last, last_column = file_range(result, finding)
    region = {"startLine": first, "startColumn": first_column, "endLine": last, "endColumn": last_column}
    if (last, last_column) <= (first, first_column):
        del region["endLine"], region["endColumn"]
    return region


def _sarif_fix(result: FileResult, finding: Finding, positions: _Positions) -> Dict[str, Any]:
    assert finding.fix is not None
    replacements = []
    for edit in finding.fix.edits:
        start, end = positions.at(edit.start), positions.at(edit.end)
        replacements.append(
            {
                "deletedRegion": {
                    "startLine": start["line"],
                    "startColumn": start["column"],
                    "endLine": end["line"],
                    "endColumn": end["column"],
                },
                "insertedContent": {"text": edit.text},
            }
        )
    return {
        "description": {"text": f"{finding.fix.description or 'apply the fix'} ({finding.fix.safety.value} fix)"},
        "artifactChanges": [{"artifactLocation": {"uri": _uri(result.path)}, "replacements": replacements}],
    }


def to_sarif(results: Sequence[FileResult], mode: Mode, config: Config) -> str:
    """A SARIF 2.1.0 log with one run; each finding a result, each fix a SARIF fix. In a notebook the
    region is in the notebook's JSON text and no fix is attached (its edits are to the cell's code,
    not to the JSON that holds it)."""
    rules = _rules()
    index = {rule.CODE: number for number, rule in enumerate(rules)}
    sarif_results = []
    notifications = []
    for result in results:
        if result.error:
            notifications.append(
                {
                    "level": "error",
                    "message": {"text": f"{display_path(result.path)}: {result.error}"},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(result.path)}}}],
                }
            )
            continue
        positions = _Positions(result)
        for outcome in result.outcomes:
            finding = outcome.finding
            cell, _ = locate(result.notebook, finding.start.line)
            label = status_label(outcome, mode, config.unsafe_fixes)
            text = f"{finding.message} {label}"
            if cell is not None:
                text = f"cell {cell}: {text}"
            record: Dict[str, Any] = {
                "ruleId": finding.code,
                "level": "error",
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(result.path)},
                            "region": _region(result, finding),
                        }
                    }
                ],
                "properties": {"status": outcome.status.value},
            }
            if finding.code in index:
                record["ruleIndex"] = index[finding.code]
            if cell is not None:
                record["properties"]["cell"] = cell
            if outcome.verdict is not None:
                record["properties"]["verdict"] = _jsonable(outcome.verdict)
            if finding.fix is not None and cell is None:
                record["fixes"] = [_sarif_fix(result, finding, positions)]
            sarif_results.append(record)
    run: Dict[str, Any] = {
        "tool": {"driver": {"name": "tapefix", "version": __version__, "rules": [_sarif_rule(r) for r in rules]}},
        "columnKind": "unicodeCodePoints",
        "results": sarif_results,
    }
    if notifications:
        run["invocations"] = [{"executionSuccessful": False, "toolExecutionNotifications": notifications}]
    else:
        run["invocations"] = [{"executionSuccessful": True}]
    document = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- GitHub annotations
def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as data, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(properties: Iterable[Tuple[str, Any]], message: str) -> str:
    rendered = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties if value is not None)
    return f"::error {rendered}::{escape_data(message)}"


def to_github(results: Sequence[FileResult], mode: Mode, config: Config) -> str:
    """One ``::error`` workflow command per finding and per file error."""
    lines = []
    for result in results:
        path = display_path(result.path)
        if result.error:
            line = None
            if result.error_at and not result.notebook:
                line = result.error_at.split(":")[0]
            lines.append(_command([("file", path), ("line", line), ("title", "tapefix error")], result.error))
            continue
        for outcome in result.outcomes:
            finding = outcome.finding
            cell, _ = locate(result.notebook, finding.start.line)
            line_number, column, end_line, end_column = file_range(result, finding)
            message = f"{finding.message} {status_label(outcome, mode, config.unsafe_fixes)}"
            if cell is not None:
                message = f"cell {cell}: {message}"
            properties = [
                ("file", path),
                ("line", line_number),
                ("col", column),
                ("endLine", end_line),
                ("endColumn", end_column),
                ("title", f"{finding.code} {_name(finding.code)}"),
            ]
            lines.append(_command(properties, message))
    return "".join(line + "\n" for line in lines)


def _name(code: str) -> str:
    for rule in _rules():
        if rule.CODE == code:
            return rule.NAME
    return ""


def render(format_name: str, results: Sequence[FileResult], mode: Mode, config: Config) -> Optional[str]:
    """The report in a machine format; None for ``text`` (printed line by line by the command line)."""
    if format_name == "json":
        return to_json(results, mode, config)
    if format_name == "sarif":
        return to_sarif(results, mode, config)
    if format_name == "github":
        return to_github(results, mode, config)
    return None
