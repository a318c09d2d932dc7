"""--format json, sarif and github through the command line; SARIF checked against the published schema."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import jsonschema
import pytest

from tapefix import cli
from tapefix.cli import main
from tapefix.formats import escape_data, escape_property
from tapefix.types import Finding, Verdict

BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)
    w = x / y
"""
FLOOR_FIX = "tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))"
#: .ci/run fetches the schema from the npm package that ships it (@microsoft/jest-sarif).
SCHEMA = Path(__file__).resolve().parent.parent / "build" / "sarif" / "sarif-2.1.0-rtm.5.json"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BUGGY)
    (tmp_path / "src" / "broken.py").write_text("import tensorflow as tf\nwith tf.GradientTape() as t:\n  x = (\n")
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# notes"]},
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": [
                    "import numpy as np\n",
                    "import tensorflow as tf\n",
                    "x = tf.Variable(1.5)\n",
                    "with tf.GradientTape() as tape:\n",
                    "    y = np.floor(x)",
                ],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "src" / "explore.ipynb").write_text(json.dumps(notebook, indent=1))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def place_in_notebook(path: Path, source_line: str, code: str) -> tuple[int, int]:
    """1-based (line, column) of ``code`` in the notebook file, on the JSON line holding ``source_line``."""
    file_lines = path.read_text(encoding="utf-8").splitlines()
    (number,) = [n for n, text in enumerate(file_lines, start=1) if json.dumps(source_line) in text]
    return number, file_lines[number - 1].index(code) + 1


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- json
def test_json_lists_every_finding_with_everything(project, capsys):
    code, out, err = run(capsys, "--check", "--format", "json", "src")
    assert code == 2  # broken.py
    report = json.loads(out)
    assert report["errors"] == [
        {"file": str(Path("src/broken.py")), "location": "3:1", "message": report["errors"][0]["message"]}
    ]
    assert report["errors"][0]["message"].startswith("does not parse")
    assert "src/broken.py:3:1: error: does not parse" in err.replace(os.sep, "/")
    by_place = {(f["file"], f["cell"], f["range"]["start"]["line"]): f for f in report["findings"]}
    assert sorted(by_place) == [
        (str(Path("src/explore.ipynb")), 2, 5),
        (str(Path("src/train.py")), None, 6),
        (str(Path("src/train.py")), None, 7),
    ]
    floor = by_place[(str(Path("src/train.py")), None, 6)]
    assert floor["code"] == "TF101"
    assert floor["message"].startswith("rounding a tensor")
    assert floor["range"] == {"start": {"line": 6, "column": 9}, "end": {"line": 6, "column": 20}}
    assert floor["status"] == "fixable"
    assert floor["fix"]["safety"] == "unsafe" and floor["fix"]["applicable"] is False
    assert floor["fix"]["edits"] == [
        {"start": {"line": 6, "column": 9}, "end": {"line": 6, "column": 20}, "content": FLOOR_FIX}
    ]
    assert floor["verdict"] is None
    in_cell = by_place[(str(Path("src/explore.ipynb")), 2, 5)]
    assert in_cell["range"]["start"] == {"line": 5, "column": 9, "cell": 2}


def test_json_after_a_fix_in_place_says_fixed(project, capsys):
    code, out, _ = run(capsys, "--unsafe-fixes", "--format", "json", "src/train.py")
    assert code == 0
    statuses = [f["status"] for f in json.loads(out)["findings"]]
    assert statuses == ["fixed", "fixed"]
    assert FLOOR_FIX in (project / "src" / "train.py").read_text()


@dataclass(frozen=True)
class RicherVerdict(Verdict):
    """A verdict with a field the verifier may add later; JSON must carry it without being told."""

    max_abs_error: float = 0.0


def test_json_carries_the_verdict_whatever_its_fields(project, capsys, monkeypatch):
    def verifier(source: str, findings: Sequence[Finding]) -> List[Verdict]:
        return [
            RicherVerdict("verified", f"{f.code}: forward values equal", ("eager",), 4, "1.0", "1.0", "statement", 0.5)
            for f in findings
        ]

    monkeypatch.setattr(cli, "_verifier", lambda enabled, examples_from=None: verifier if enabled else None)
    code, out, _ = run(capsys, "--check", "--verify", "--format", "json", "src/train.py")
    assert code == 1
    verdicts = [f["verdict"] for f in json.loads(out)["findings"]]
    assert verdicts[0] == {
        "status": "verified",
        "reason": "TF101: forward values equal",
        "modes": ["eager"],
        "inputs": 4,
        "before": "1.0",
        "after": "1.0",
        "level": "statement",
        "max_abs_error": 0.5,
    }
    assert verdicts[1]["reason"].startswith("TF103")


# ----------------------------------------------------------------------------- sarif
@pytest.fixture(scope="module")
def sarif_schema() -> Dict[str, Any]:
    if not SCHEMA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SCHEMA} is missing: .ci/run fetches it")
        pytest.skip(f"{SCHEMA} is missing: run the npm step of .ci/run to fetch the published SARIF schema")
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def validate(document: Dict[str, Any], schema: Dict[str, Any]) -> None:
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_sarif_is_valid_and_has_what_code_scanning_needs(project, capsys, sarif_schema):
    code, out, _ = run(capsys, "--check", "--format", "sarif", "src")
    assert code == 2
    document = json.loads(out)
    validate(document, sarif_schema)
    assert document["version"] == "2.1.0"
    (run_,) = document["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules][:3] == ["TF101", "TF102", "TF103"]
    assert rules[0]["help"]["markdown"].startswith("# TF101 rounding-on-tensor")
    results = run_["results"]
    assert len(results) == 3
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        location = result["locations"][0]["physicalLocation"]
        assert not location["artifactLocation"]["uri"].startswith(("/", "file:"))  # relative to the checkout
        assert location["region"]["startLine"] >= 1
    floor = next(
        r
        for r in results
        if r["ruleId"] == "TF101" and r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "src/train.py"
    )
    assert floor["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 6,
        "startColumn": 9,
        "endLine": 6,
        "endColumn": 20,
    }
    replacement = floor["fixes"][0]["artifactChanges"][0]["replacements"][0]
    assert replacement["insertedContent"]["text"] == FLOOR_FIX
    notebook = next(
        r for r in results if r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(".ipynb")
    )
    assert notebook["message"]["text"].startswith("cell 2: ")
    line, column = place_in_notebook(project / "src" / "explore.ipynb", "    y = np.floor(x)", "np.floor(x)")
    region = notebook["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (line, column)
    assert (region["endLine"], region["endColumn"]) == (line, column + len("np.floor(x)"))
    assert "fixes" not in notebook
    notification = run_["invocations"][0]["toolExecutionNotifications"][0]
    assert "broken.py" in notification["message"]["text"]


def test_sarif_without_findings_is_valid(project, capsys, sarif_schema):
    (project / "clean.py").write_text("x = 1\n")
    code, out, _ = run(capsys, "--check", "--format", "sarif", "clean.py")
    assert code == 0
    document = json.loads(out)
    validate(document, sarif_schema)
    assert document["runs"][0]["results"] == []


# ----------------------------------------------------------------------------- github annotations
def test_github_annotations(project, capsys):
    code, out, _ = run(capsys, "--check", "--format", "github", "src")
    assert code == 2
    lines = out.splitlines()
    assert (
        "::error file=src/train.py,line=6,col=9,endLine=6,endColumn=20,title=TF101 rounding-on-tensor::"
        "rounding a tensor on the gradient path: the gradient is cut [unsafe fix available (--unsafe-fixes)]"
    ) in lines
    line, column = place_in_notebook(project / "src" / "explore.ipynb", "    y = np.floor(x)", "np.floor(x)")
    assert any(
        annotation.startswith(f"::error file=src/explore.ipynb,line={line},col={column},")
        and "::cell 2: " in annotation
        for annotation in lines
    )
    assert any(
        line.startswith("::error file=src/broken.py,line=3,title=tapefix error::does not parse") for line in lines
    )


def test_github_annotations_escape_properties_and_messages(project, capsys):
    weird = project / "we,ird:100%.py"
    weird.write_text(BUGGY)
    code, out, _ = run(capsys, "--check", "--select", "TF101", "--format", "github", weird.name)
    assert code == 1
    assert out.startswith("::error file=we%2Cird%3A100%25.py,line=6,col=9,")
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
