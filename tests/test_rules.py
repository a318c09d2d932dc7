"""Every rule's VALID and INVALID examples, run as tests: the examples are the rules' contract."""

from __future__ import annotations

import pytest

from tapefix import Config, check_source, engine, fix_source
from tapefix.rules import ALL_RULES

VALID = [
    pytest.param(rule, example, id=f"{rule.CODE}-valid-{i}")
    for rule in ALL_RULES
    for i, example in enumerate(rule.VALID)
]
INVALID = [
    pytest.param(rule, example, id=f"{rule.CODE}-invalid-{i}")
    for rule in ALL_RULES
    for i, example in enumerate(rule.INVALID)
]


@pytest.mark.parametrize("rule, example", VALID)
def test_valid_example_is_left_alone(rule, example):
    config = Config(select=(rule.CODE,), unsafe_fixes=True)
    assert check_source(example.code, config) == []
    assert fix_source(example.code, config).fixed_source == example.code
    # The check above is decided on the ast-built tree; libcst's exact tree must agree.
    assert engine._analyze(example.code, engine.parse(example.code), engine.rules_for(config)) == []


@pytest.mark.parametrize("rule, example", INVALID)
def test_invalid_example_is_flagged_and_fixed_as_documented(rule, example):
    config = Config(select=(rule.CODE,), unsafe_fixes=True)
    findings = check_source(example.code, config)
    assert [f.code for f in findings] == [rule.CODE] * len(findings) and findings
    result = fix_source(example.code, config)
    if example.expected is None:
        assert all(f.fix is None for f in findings), "an example without expected output asserts no fix"
        assert result.fixed_source == example.code
    else:
        assert result.fixed_source == example.expected
        # A second run changes nothing.
        assert fix_source(result.fixed_source, config).fixed_source == result.fixed_source


@pytest.mark.parametrize("rule, example", INVALID)
def test_unsafe_fixes_need_the_flag(rule, example):
    findings = check_source(example.code, Config(select=(rule.CODE,)))
    safe_only = fix_source(example.code, Config(select=(rule.CODE,)))
    if all(f.fix is None or f.fix.safety.value != "safe" for f in findings):
        assert safe_only.fixed_source == example.code


@pytest.mark.parametrize("rule", ALL_RULES, ids=[r.CODE for r in ALL_RULES])
def test_rule_is_documented(rule):
    doc = rule.__doc__ or ""
    for heading in ("## What it does", "## Why is this bad?", "## Example", "## Use instead", "## Fix safety"):
        assert heading in doc, f"{rule.CODE} docstring lacks {heading!r}"
    assert rule.VALID, f"{rule.CODE} has no negative examples"
    assert rule.INVALID, f"{rule.CODE} has no positive examples"


def test_codes_and_names_are_unique():
    codes = [r.CODE for r in ALL_RULES]
    names = [r.NAME for r in ALL_RULES]
    assert len(set(codes)) == len(codes)
    assert len(set(names)) == len(names)
