"""The fast read-only walk and statement-at-a-time positions agree with libcst's own visit and provider."""

from __future__ import annotations

from pathlib import Path
from typing import List

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from tapefix.analysis.walk import TRIVIA, Positions, walk

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

DUPLICATES = (
    "# header comment\n"
    "\n"
    "x = 1\n"
    "def f(a):\n"
    "    return a\n"
    "\n"
    "x = 1\n"  # the same statement twice: found by counting lines, not by its text
    "def f(a):\n"
    "    return a\n"
    "if x:\n"
    "\tprint(f(x))\n"
)
CRLF = "import tensorflow as tf\r\n\r\nwith tf.GradientTape() as t:\r\n    y = tf.floor(x)  # cut\r\n"
NO_FINAL_NEWLINE = "a = (1 +\n     2)\nb = [a,\n     a]"


def sources() -> List[object]:
    found: List[object] = [
        pytest.param(text, id=name)
        for name, text in [("duplicates", DUPLICATES), ("crlf", CRLF), ("no-final-newline", NO_FINAL_NEWLINE)]
    ]
    found.extend(pytest.param(p.read_text(), id=p.name) for p in sorted(CORPUS.glob("*.py")))
    return found


class _Order(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: List[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if not isinstance(node, TRIVIA):
            self.seen.append(node)
        return True


@pytest.mark.parametrize("source", sources())
def test_positions_are_the_providers_for_every_node(source: str) -> None:
    module = cst.parse_module(source)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    for statement in module.body:
        positions = Positions(module, source)  # fresh each time: no statement is placed by another's walk
        order = _Order()
        walk(statement, order)
        for node in order.seen:
            assert positions.get(node, statement) == expected[node], module.code_for_node(node)


@pytest.mark.parametrize("source", sources())
def test_the_walk_visits_what_libcst_visits_in_the_same_order(source: str) -> None:
    module = cst.parse_module(source)
    ours, theirs = _Order(), _Order()
    walk(module, ours)
    module.visit(theirs)
    assert [type(n) for n in ours.seen] == [type(n) for n in theirs.seen]


def test_a_field_visited_only_when_set_is_walked_whatever_order_the_nodes_come_in() -> None:
    # An f-string's format spec is visited only when present; the first expression seen has one, the
    # second not, the third again (and a conversion, another optional field, in between).
    source = 'f"{a:{b}}"; f"{c}"; f"{d:{e}}"; f"{g!r}"; f"{h!r:{i}}"\n'
    ours, theirs = _Order(), _Order()
    module = cst.parse_module(source)
    walk(module, ours)
    module.visit(theirs)
    names = [n.value for n in ours.seen if isinstance(n, cst.Name)]
    assert names == ["a", "b", "c", "d", "e", "g", "h", "i"]
    assert [type(n) for n in ours.seen] == [type(n) for n in theirs.seen]
