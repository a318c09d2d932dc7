"""A sample of ``benchmarks/fuzz_hostile.py`` in the suite: the corpus's tape files, mutated with lone
backslash lines, form feeds, other line ends and deep expressions, give 0 crashes and 0 wrong positions.
The second test shows the oracle bites: without tapefix.layout's same-length twin, it finds wrong
positions in the same sample."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_hostile", ROOT / "benchmarks" / "fuzz_hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_hostile"] = module  # its dataclass needs to find its module
    spec.loader.exec_module(module)
    return module


def test_mutated_corpus_gives_no_crash_and_no_wrong_position() -> None:
    report = _fuzz().run([ROOT / "corpus"], mutants=6, seed=1, limit=20, deeps=2)
    assert report.files >= 5 and report.mutants >= 50
    assert report.refused > 0  # the deep mutants: one clear error each
    assert not report.crashes, report.crashes[:3]
    assert not report.wrong_positions, report.wrong_positions[:3]


def test_the_oracle_finds_wrong_positions_when_libcst_sees_the_raw_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    import libcst

    from tapefix import engine

    monkeypatch.setattr(engine, "parse_exactly", libcst.parse_module)
    report = _fuzz().run([ROOT / "corpus"], mutants=3, seed=1, limit=20, deeps=0)
    assert report.wrong_positions
