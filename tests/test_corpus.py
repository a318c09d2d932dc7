"""The bundled corpus: each program's fix matches its golden file, and the fixed program, run under
TensorFlow, has every gradient, finite, with forward values as the rules document.

Update the golden files after an intended change with: TAPEFIX_UPDATE_GOLDEN=1 python -m pytest tests/test_corpus.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tapefix import Config, check_source, fix_source
from tapefix.cli import main

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
GOLDEN = Path(__file__).resolve().parent / "golden" / "corpus"
PROGRAMS = sorted(p.name for p in CORPUS.glob("*.py"))

# How the fixed program's forward value must relate to the original's, per the rules applied:
# "identical" (exact and straight-through fixes), "original-raised" (the original never got a value),
# "singular" (the original's value was inf/NaN at a singular point; the fixed one is finite),
# "report-only" (only a person can fix these: the program is reported and left byte for byte alone).
FORWARD = {
    "custom_training_loop.py": "original-raised",
    "floor_quantize.py": "identical",
    "numpy_in_loss.py": "original-raised",
    "pairwise_distance.py": "identical",
    "piecewise_if.py": "original-raised",
    "reciprocal_loss.py": "singular",
    "report_only.py": "report-only",
    "saliency.py": "original-raised",
    "seed_questions.py": "original-raised",
}
REPORT_ONLY = sorted(name for name, kind in FORWARD.items() if kind == "report-only")


def _fixed(name: str) -> str:
    return fix_source((CORPUS / name).read_text(), Config(unsafe_fixes=True)).fixed_source


def test_every_program_has_an_expectation():
    assert sorted(FORWARD) == PROGRAMS


@pytest.mark.parametrize("name", PROGRAMS)
def test_fix_matches_golden_file(name):
    fixed = _fixed(name)
    golden = GOLDEN / name
    if os.environ.get("TAPEFIX_UPDATE_GOLDEN"):
        golden.write_text(fixed)
    original = (CORPUS / name).read_text()
    if name in REPORT_ONLY:
        assert fixed == original
    else:
        assert fixed != original, "every other corpus program holds at least one fixable idiom"
    assert fixed == golden.read_text()


@pytest.mark.parametrize("name", REPORT_ONLY)
def test_report_only_program_is_reported_without_fixes(name):
    findings = check_source((CORPUS / name).read_text(), Config(unsafe_fixes=True))
    assert findings and all(f.fix is None or f.fix.safety.value == "display-only" for f in findings)


def test_in_place_through_the_command_line_gives_the_golden_files(tmp_path, capsys):
    copy = tmp_path / "corpus"
    shutil.copytree(CORPUS, copy)
    assert main(["--unsafe-fixes", str(copy)]) in (0, 1)
    for name in PROGRAMS:
        assert (copy / name).read_text() == (GOLDEN / name).read_text()
    # A second run changes nothing.
    main(["--unsafe-fixes", str(copy)])
    for name in PROGRAMS:
        assert (copy / name).read_text() == (GOLDEN / name).read_text()


@pytest.fixture(scope="module")
def runs():
    """Both versions of every program, run in one TensorFlow process."""
    paths = [str(CORPUS / n) for n in PROGRAMS] + [str(GOLDEN / n) for n in PROGRAMS]
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("corpus_child.py")), *paths],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    return {n: (results[str(CORPUS / n)], results[str(GOLDEN / n)]) for n in PROGRAMS}


def _finite(values) -> bool:
    if values is None:
        return False
    if isinstance(values, list):
        return all(_finite(v) for v in values)
    return math.isfinite(values)


def _broken(run) -> bool:
    if run["error"]:
        return True
    grads = run["grads"]
    return grads is None or any(g is None or not _finite(g) for g in grads)


@pytest.mark.tf
@pytest.mark.parametrize("name", PROGRAMS)
def test_original_is_broken_and_fixed_program_has_finite_gradients(runs, name):
    before, after = runs[name]
    assert _broken(before), f"{name}: the original program should show the bug, got {before}"
    if name in REPORT_ONLY:
        assert after == before  # nothing was rewritten, so nothing changed: honest, not fixed
        return
    assert after["error"] is None, after["error"]
    assert after["grads"] and all(g is not None and _finite(g) for g in after["grads"]), after["grads"]
    assert any(any(x != 0 for x in _flat(g)) for g in after["grads"]), "gradients are silently all zero"


def _flat(values):
    if isinstance(values, list):
        for v in values:
            yield from _flat(v)
    else:
        yield values


@pytest.mark.tf
@pytest.mark.parametrize("name", PROGRAMS)
def test_forward_values_agree_as_documented(runs, name):
    before, after = runs[name]
    expectation = FORWARD[name]
    if expectation == "identical":
        assert before["loss"] == after["loss"]
    elif expectation == "report-only":
        assert before == after
    elif expectation == "original-raised":
        assert before["error"] and before.get("loss") is None
        assert _finite(after["loss"])
    else:
        assert not _finite(before["loss"]) and _finite(after["loss"])
