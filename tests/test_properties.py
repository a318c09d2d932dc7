"""Properties of a rewrite, over generated modules: tape blocks with idioms (np.floor(x), an ``if`` on a
vector tensor, 1/x) among unrelated statements, comments, blank lines, tabs and CRLF.

For every module: the fixed module parses, a second run changes nothing, and every line outside the
rewritten statements is byte-identical to the input, through the same decode/encode as the command line.
"""

from __future__ import annotations

import ast
import codecs
import difflib
from typing import List, Set, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapefix import api, engine
from tapefix.types import Config

UNSAFE = Config(unsafe_fixes=True)

#: statements that have nothing to do with tapes
UNRELATED = [
    "count = 0",
    "name = 'epoch'  # a trailing comment",
    "# a comment line",
    "print('step', 3)",
    "values = [1, 2, 3]",
    "total = sum(values) / 4",
    "rows = {'a': 1,\n        'b': 2}",
    "flag = not False",
    "text = 'ünïcödé ½'",
    "scale = 1 / 3",
    "limit = np.floor(7.5)",
]
#: (statement lines inside a tape, whether it is an idiom tapefix rewrites)
TAPE_STATEMENTS = [
    (["y = np.floor(x)"], True),
    (["r = 1 / x"], True),
    (["if x > 0:", "{i}y = y * 2.0"], True),
    (["z = x * x"], False),
    (["# inside the tape"], False),
    (["loss = tf.reduce_sum(x)"], False),
    ([""], False),
]


@st.composite
def modules(draw) -> Tuple[bytes, Set[int], str]:
    """(file bytes, indexes of lines that belong to idiom statements, newline)."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    indent = draw(st.sampled_from(["    ", "\t", "  "]))
    lines: List[Tuple[str, bool]] = [
        ("import numpy as np", False),
        ("import tensorflow as tf", False),
        ("", False),
        # A zero among the values: ``1 / x`` divides by a tensor that can be zero.
        ("x = tf.Variable([0.0, 2.0, 3.0])", False),
        ("y = x", False),
    ]
    for _ in range(draw(st.integers(1, 4))):
        for statement in draw(st.lists(st.sampled_from(UNRELATED), max_size=4)):
            lines.extend((line, False) for line in statement.split("\n"))
        lines.append(("with tf.GradientTape() as tape:", False))
        body = draw(st.lists(st.sampled_from(TAPE_STATEMENTS), min_size=1, max_size=5))
        if all(not any(text.strip() and not text.startswith("#") for text in lines_) for lines_, _ in body):
            body.append((["z = x * x"], False))
        for statement, idiom in body:
            lines.extend((indent + text.format(i=indent) if text else "", idiom) for text in statement)
        lines.extend(("", False) for _ in range(draw(st.integers(0, 2))))
    final = draw(st.booleans())
    text = newline.join(line for line, _ in lines) + (newline if final else "")
    bom = draw(st.booleans())
    data = (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")
    idioms = {index for index, (_, idiom) in enumerate(lines) if idiom}
    return data, idioms, newline


def fix_bytes(data: bytes) -> bytes:
    decoded = api.decode(data)
    return api.encode(engine.fix_source(decoded.text, UNSAFE).fixed_source, decoded)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_rewrites_parse_are_stable_and_touch_only_the_idioms(case: Tuple[bytes, Set[int], str]) -> None:
    data, idioms, newline = case
    fixed = fix_bytes(data)

    text = api.decode(fixed).text
    ast.parse(text)
    engine.parse(text)

    assert fix_bytes(fixed) == fixed  # a second run changes nothing

    old = data.splitlines(keepends=True)
    new = fixed.splitlines(keepends=True)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        assert set(range(i1, i2)) <= idioms, (old[i1:i2], new[j1:j2])
        for line in new[j1:j2]:
            # A rewritten line keeps the file's newline.
            assert line.endswith(newline.encode()) or line is new[-1]
    if idioms:
        assert fixed != data
    assert fixed.startswith(codecs.BOM_UTF8) == data.startswith(codecs.BOM_UTF8)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(UNRELATED), max_size=8), st.sampled_from(["\n", "\r\n", "\r"]))
def test_modules_without_a_tape_come_back_byte_for_byte(statements: List[str], newline: str) -> None:
    data = newline.join(["import numpy as np", *statements]).encode() + newline.encode()
    assert fix_bytes(data) == data
    assert engine.check_source(api.decode(data).text) == []
