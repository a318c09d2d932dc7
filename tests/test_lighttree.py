"""``light_module`` gives the tree ``libcst.parse_module`` gives, but for whitespace, and libcst's positions.

The tree is compared by its shape: node classes, names, numbers and string texts, operators, and which
optional parts are there, walked field by field (``walk.child_fields``) with whitespace and punctuation
left out. Positions are compared node by node, walking both trees in parallel, with the ranges libcst's
``PositionProvider`` gives for the source as tapefix hands it to libcst (``layout.parseable``).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Tuple

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from tapefix.analysis.lighttree import Unsupported, light_module
from tapefix.analysis.walk import TRIVIA, child_fields
from tapefix.layout import parseable

ROOT = Path(__file__).resolve().parents[1]
_TRIVIA = frozenset(TRIVIA)
#: the nodes light_module gives a range for, at the least
_RANGED = (cst.BaseExpression, cst.BaseSmallStatement, cst.BaseCompoundStatement)
#: string fields that are layout, not program
_LAYOUT_STRINGS = {("Module", "default_indent"), ("Module", "default_newline"), ("IndentedBlock", "indent")}


def _fields(node: cst.CSTNode) -> List[str]:
    """The node's child fields in libcst's visiting order, and any other field holding nodes (the cache
    behind ``child_fields`` can leave out a field that is sometimes None, e.g. an f-string format spec)."""
    names = list(child_fields(node))
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if field.name not in names and (
            isinstance(value, (list, tuple)) or (isinstance(value, cst.CSTNode) and type(value) not in _TRIVIA)
        ):
            names.append(field.name)
    return names


def shape(node: cst.CSTNode) -> List[Any]:
    kind = type(node)
    out: List[Any] = [kind.__name__]
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if isinstance(value, str) and (kind.__name__, field.name) not in _LAYOUT_STRINGS:
            out.append((field.name, value))
    if isinstance(node, cst.ImportFrom):
        out.append(("relative", len(node.relative)))
    for name in _fields(node):
        value = getattr(node, name)
        if isinstance(value, (list, tuple)):
            out.append((name, [shape(item) for item in value if type(item) not in _TRIVIA]))
        elif value is None:
            out.append((name, None))
        elif isinstance(value, cst.CSTNode) and type(value) not in _TRIVIA:
            out.append((name, shape(value)))
    return out


def _pairs(light: cst.CSTNode, heavy: cst.CSTNode, out: List[Tuple[cst.CSTNode, cst.CSTNode]]) -> None:
    """Each node of the light tree with its twin in libcst's tree (the shapes are equal)."""
    out.append((light, heavy))
    for name in _fields(light):
        mine, theirs = getattr(light, name), getattr(heavy, name)
        if isinstance(mine, (list, tuple)):
            mine = [item for item in mine if type(item) not in _TRIVIA]
            theirs = [item for item in theirs if type(item) not in _TRIVIA]
            for a, b in zip(mine, theirs):
                _pairs(a, b, out)
        elif isinstance(mine, cst.CSTNode) and type(mine) not in _TRIVIA:
            _pairs(mine, theirs, out)


def _first_difference(expected: Any, actual: Any, path: str = "module") -> str:
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (a, b) in enumerate(zip(expected, actual)):
            if a != b:
                step = a[0] if isinstance(a, tuple) else index
                return _first_difference(
                    a[1] if isinstance(a, tuple) else a, b[1] if isinstance(b, tuple) else b, f"{path}.{step}"
                )
        return f"{path}: {len(expected)} parts in libcst's tree, {len(actual)} in the light one"
    return f"{path}: libcst {expected!r:.300} != light {actual!r:.300}"


def assert_same_tree(source: str, positions: bool = True) -> Dict[cst.CSTNode, Tuple[int, int, int, int]]:
    heavy = cst.parse_module(source)
    light, ranges = light_module(source)
    expected, actual = shape(heavy), shape(light)
    assert expected == actual, _first_difference(expected, actual)
    light.code_for_node(light)  # generates code (not the source's text) without an error
    if positions:
        reference = cst.parse_module(parseable(source))
        places = MetadataWrapper(reference, unsafe_skip_copy=True).resolve(PositionProvider)
        pairs: List[Tuple[cst.CSTNode, cst.CSTNode]] = []
        _pairs(light, reference, pairs)
        wrong = []
        for mine, theirs in pairs:
            found = ranges.get(mine)
            if found is None:  # every expression and statement has one (Name, Call, Attribute, ... included)
                assert not isinstance(mine, _RANGED), (
                    f"no range for {type(mine).__name__} {reference.code_for_node(theirs)!r}"
                )
                continue
            place = places[theirs]
            want = (place.start.line, place.start.column, place.end.line, place.end.column)
            if found != want:
                wrong.append(f"{type(mine).__name__} {reference.code_for_node(theirs)!r}: {found} != {want}")
        assert not wrong, "\n".join(wrong)
    return ranges


# ------------------------------------------------------------------------------------ hand-written cases

CASES = {
    "imports": (
        "# -*- coding: utf-8 -*-\n"
        '"""Module docstring with ünïcödé."""\n'
        "from __future__ import annotations\n"
        "import os, sys as system  # comment\n"
        "import   a . b . c   as   d\n"
        "from . import ( x ,  # trailing\n"
        "    y as  z , )\n"
        "from ...pkg.mod import *\n"
        "from .. import w\n"
        "from a import (b)\n"
        "import a.b as c, \\\n"
        "   d\n"
    ),
    "non-ascii before code": (
        "naïve = \"é\" ; café = naïve + 'ü'   # comment ü\n"
        's = "日本語"; t = f"{naïve!r:>{café}} ü {s}"\n'
        '"é" + f(ü, ÿ=1).ą[ś:ż] ; ü.ä.ö = ß\n'
        "lambda ä=1: ä\n"
        'x = ("é", "ü") ; y = ( "ü" , ) ; z = ("é" for é in "ü")\n'
        'w = "é"[ 1 : ] ; v = ("é"\n  "ü" f"{é}")\n'
        "ü = 1; ü.ä(ö=1).ß[ü:ä] + (ü) * ä\n"
    ),
    "identifiers that NFKC changes": (
        'ﬁle = 1  # a ligature: ast says "file"\n'
        "ｆｕｌｌ = ﬁle + 1\n"
        "print(ﬁle, ｆｕｌｌ); obj.ﬁeld = 2\n"
        "def ﬁx(ａｒｇ=1, *, ｋｗ): return ａｒｇ\n"
        "import ﬁle as ｆｕｌｌ  # ，\n"
        "from ﬁle import (ｆｕｌｌ as ﬁle)\n"
        "global ﬁle  # 注释，\n"
        "try: pass\n"
        "except E as ﬁ: pass\n"
        "class Ｋ(ﬁle, ｍｅｔａ=1): pass\n"
        "f(ｋｗ=1)\n"
        'value = "日本語，テスト"; name = f"{value}，{ﬁle}"\n'
        "x = [  # 注释\n    \"é\",  # ü\n    'ﬁ',\n]\n"
    ),
    "tuples and parentheses": (
        "x = ( 1 ,\n      2 , )  # tuple\n"
        "y = ((a), (b))\n"
        "z = (a), b\n"
        "w = a, (b)\n"
        "e = ()\n"
        "q = ( # c\n )\n"
        "x = 1, \\\n  2\n"
        "x = (  # (\n  a, b)\n"
        "x = ((a)  # )\n  , b)\n"
        "x = ((a)).b((c))[(d)]\n"
        "(a, *b), c = d\n"
        "[a, *b] = c\n"
        "*a, = b\n"
        "for x in *a, *b: pass\n"
        "for a, b, in c: pass\n"
    ),
    "collections and comprehensions": (
        "v = [*a, *b, c]\n"
        "m = {**a, 'k': v, **{}}\n"
        "st = {1, *s}\n"
        "x = [], {}, (), set()\n"
        "x = [i for i in range(10) if i if not i for j in i]\n"
        "x = {i: j for i, j in z}\n"
        "x = {i for i in z}\n"
        "x = (i for i in z)\n"
        "x = sum((i for i in (j for j in k)))\n"
        "{(k): (v) for (k, v) in z if (k)}\n"
        "[y := f(x) for x in z]\n"
        "f( x for x in y )\n"
        "f(\n  x for x in y  # c\n)\n"
        "f((i for i in z), 1)\n"
    ),
    "operators": (
        "x = a + b - c * d / e // f % g ** h @ i << j >> k & l ^ m | n\n"
        "x = a < b <= c > d >= e == f != g is h is not i in j not in k\n"
        "x = a and b and c or d or e and (f or g)\n"
        "x = (a and b) and c\n"
        "x = (a) or (b) or (c) or (d)\n"
        "x = a < (b) < c\n"
        "print(a if b else c, not a, -a, +a, ~a, a ** -b)\n"
        "long = 1 + \\\n    2 * \\\n    3\n"
        "x = (a +\n     b)  # comment\n"
    ),
    "numbers and strings": (
        "x = 0x10, 0o17, 0b11, 1_000, 1e-3, 1.5J, 3.14, .5, 5., 1E10\n"
        "x = 0XFF + 0O7 + 0B1 + 1_0.0_1e+1_0 + 0j + 00\n"
        "x = True, False, None, ...\n"
        "x = 'a' \"b\" '''c''' \"\"\"d\"\"\" r'\\d' u'z'\n"
        "x = b'x' rb'y' BR\"w\"\n"
        "x = Rb'a' + bR'b' + U'c'\n"
        "x = ('implicit '\n     \"concatenation \"  # comment\n     f'with {f} field')\n"
        "x = '''a\nb''' 'c'\n"
    ),
    "f-strings": (
        'x = f"{a}" f\'{b!s}\' F"{c:{d}}" rf"\\d{e}" fr\'{f}\\n\'\n'
        'x = f"{x=}" f"{ x = }" f"{x=!r:>10}" f"{x:}" f"{x!a}" f"{{}}" f"{{{x}}}"\n'
        'x = f"{\'nested\'}" f\'{"a" if b else "c"}\' f"{a[\'k\']}" f"{d[1:2]}" f"{(lambda: 1)()}"\n'
        'x = f"""multi\n{line}\n  {a +\n  b}"""\n'
        'x = f"""{\n  a\n  +\n  b\n}"""\n'
        'x = f"\\N{BULLET} {x}"\n'
        "x = f\"{x:{'>' if a else '<'}{w}}\"\n"
        "x = f\"{f'{inner}'}\"\n"
        "x = f'{a!r}' 'plain' f'{b}'\n"
        'x = f"{x:%Y-%m-%d %H:%M}" f"{x:=^10}" f"{(x:=1)}"\n'
        'x = f"{a, b}" f"{*a,}" f"{ a, b }"\n'
        'x = f"{x:{y}.{z}f}" f"\\{x}" f"{x !r}"\n'
        'x = "é"; y = f"é{x}é{f\'ü{x!r}\'}"\n'
        'async def f():\n    x = f"{await g()}"\n    y = f"{yield}"\n'
    ),
    "functions and lambdas": (
        'def f( a , b = 1 , / , c : int = 2 , * args : str , d , e = 3 , ** kw ) -> "ret" :\n'
        "    return\n"
        "def g(*, a): ...\n"
        "def h(a, /): yield\n"
        "def k(*a): yield from a\n"
        "def m(a=1, /, b=2, *, c, d=3): pass\n"
        "def n(*args: int, **kw: str) -> None: pass\n"
        "def o(*args: *Ts): pass\n"
        "def p():\n    x = yield a, b\n    return (yield)\n"
        "def q():\n    return 1, 2\n    return *a, b\n"
        "lambda: 0\n"
        "lambda a, b=1, *c, d, e=2, **f: (a, b)\n"
        "lambda *, a: a\n"
        "lambda a, /, b: a\n"
        "f = lambda x=(1, 2): x\n"
        "def outer():\n    x = 1\n    def inner():\n        nonlocal x ; x += 1\n    return inner\n"
    ),
    "classes and decorators": (
        "@ decorator\n"
        "@ mod . attr ( 1 ) . call ( )\n"
        "@ (lambda f: f)\n"
        "class C ( Base , * bases , metaclass = Meta , ** kw ) :\n"
        '    """Doc."""\n'
        "    attr : int = 1\n"
        "    other : str\n"
        "    def method ( self ) : return self . attr\n"
        "class D: pass\n"
        "class E(): pass\n"
        "class F(*b, c=1): pass\n"
        "@a  # c\n# comment\n@b\ndef f(): pass\n"
        "@d\nasync def g(): pass\n"
    ),
    "calls and subscripts": (
        "f(a, *b, c, d=1, *e, **g)\n"
        "f(a=1, *b, c=2, **d, e=3)\n"
        "f(a)(b)(c)\n"
        "f(**a, b=1)\n"
        "f(\n    a,  # comment\n    b,\n)\n"
        "f(a, b,)\n"
        "a.b(c).d[e].f(g=h.i).j\n"
        "a[b:c:d, ::, :, e, ...] = f\n"
        "a[()] = a[(1, 2)] = a[1, 2] = a[1,] = a[*b] = a[*b, c] = 1\n"
        "x[(a, b), c]\nx[(a), b]\nx[((a, b))]\n"
        "x[..., None]\nx[...]\n"
        "x[a: ]\nx[a: , b]\nx[a:: ]\nx[ : ]\nx[a:b: ]\nx[:b ]\n"
        "x[:  # c\n  ]\n"
        "train = data[\n    :\n]  # the whole set\n"
    ),
    "statements": (
        "a = b = c = d\n"
        "a.b.c.d = e\n"
        "x: list[int] = []\n"
        "x.y: int\n"
        "x[0]: int = 2\n"
        "x += 1; x -= 1; x *= 1; x /= 1; x //= 1; x %= 1; x **= 1; x >>= 1; x <<= 1; x &= 1; x ^= 1; "
        "x |= 1; x @= 1\n"
        "del a\ndel a, b\ndel (a, b)\ndel [a, b]\ndel a.b, c[0]\ndel a,\ndel (a), b,\n"
        "del a, \\\n    b\n"
        'assert x, "msg"\nassert (x)\n'
        "raise\nraise X from None\n"
        "if (n := len(a)) > 10: pass\n"
        "global g1, g2\n"
        "def f():\n    global a, \\\n        b\n"
        "x = 1; \\\ny = 2\n"
        "pass; pass;\n"
    ),
    "compound statements": (
        "if x : return_ = 1 ; y = 2\n"
        "elif (y) :\n    pass\n"
        "elif z:  # ü\n  pass\n"
        "else :\n    if w: pass\n    else: pass\n"
        "if a: pass\nelif b: pass\nelif c: pass\nelse:\n    if d: pass\n    elif e: pass\n"
        "if a:\n    pass\nelse:\n    if b:\n        pass\n    x = 1\n"
        "if a:\n    pass\n# c\nelse:  # d\n    pass\n"
        "if x: \\\n    pass\n"
        "if (a and\n    b): pass\n"
        "for i, (j, k) in enumerate(z): continue\nelse: break\n"
        "while not done:\n    break\nelse:\n    pass\n"
        "for i in x: a; b;\nwhile y: c;\n"
        "def f():\n    x = 1;\n    y = 2;\n"
        "with open(p) as fh, lock:\n    pass\n"
        "with (open(p) as fh, lock as l):\n    pass\n"
        "with (a, b):\n    pass\n"
        "with (a, b) as c: pass\n"
        "if x:\n\tif y:\n\t\tpass\n\telse: pass\n"
    ),
    "try": (
        "try:\n    pass\n"
        "except ValueError:\n    pass\n"
        "except (TypeError, KeyError) as err:\n    raise\n"
        "except Exception as ü:\n    raise RuntimeError('x') from ü\n"
        "except:\n    pass\n"
        "else:\n    pass\n"
        "finally:\n    pass\n"
        "try:\n    pass\nexcept* ValueError as eg:\n    pass\nexcept* (TypeError,):\n    pass\n"
        "try: pass\nfinally: pass\n"
        "try: pass\nexcept (A)as e: pass\n"
        "try:\n    pass\nexcept E:\n    pass\nelse:\n    if x: pass\n"
    ),
    "async": (
        "async def main():\n"
        "    async with a as b, c as (d, e):\n"
        "        await f\n"
        "    async for i in aiter(): pass\n"
        "    result = [x async for x in y]\n"
        "    other = await (yield)\n"
    ),
    "layouts": (
        "x = 1\n"
        "with tf.GradientTape() as tape:\n"
        "    z = 1\n"
        "    \\\n"
        "\\\n"
        "    y = np.floor(x)\n"
        "\f\n"
        "grad = tape.gradient(y, x)\n"
    ),
    "no newline at the end": "x = f(1)",
    "byte order mark": "\ufeffimport os\nx = f(os.sep)\n",
    "empty": "",
    "only a comment": "# nothing\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_tree_and_ranges(name: str) -> None:
    assert_same_tree(CASES[name])


@pytest.mark.parametrize("name", ["imports", "f-strings", "compound statements", "non-ascii before code"])
def test_crlf(name: str) -> None:
    assert_same_tree(CASES[name].replace("\n", "\r\n"))


def test_ranges_are_libcst_ranges() -> None:
    """A few ranges spelled out: columns in code points, parentheses left out, the libcst way."""
    source = 'é = "ü"; y = (f(x) + g.h)\nz = (a, b)\nq = x[1:\n  ]\n'
    light, ranges = light_module(source)
    found = {}
    for node in ranges:
        if isinstance(node, (cst.Call, cst.BinaryOperation, cst.Tuple, cst.Slice)):
            found[type(node).__name__] = ranges[node]
        if isinstance(node, cst.Name) and node.value in ("é", "h", "y"):
            found[node.value] = ranges[node]
    assert found == {
        "é": (1, 0, 1, 1),
        "y": (1, 9, 1, 10),
        "Call": (1, 14, 1, 18),
        "h": (1, 23, 1, 24),
        "BinaryOperation": (1, 14, 1, 24),
        "Tuple": (2, 5, 2, 9),
        "Slice": (3, 6, 4, 2),
    }


def test_nodes_are_plain_libcst_nodes() -> None:
    """Every node is an instance of libcst's own class with every field set."""
    light, _ = light_module(CASES["calls and subscripts"] + CASES["functions and lambdas"])
    seen = 0
    stack: List[Any] = [light]
    while stack:
        node = stack.pop()
        assert type(node).__module__.startswith("libcst.")
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)  # raises AttributeError for an unset slot
            if isinstance(value, cst.CSTNode):
                stack.append(value)
            elif isinstance(value, (list, tuple)):
                stack.extend(item for item in value if isinstance(item, cst.CSTNode))
        seen += 1
    assert seen > 300
    call = light.body[0].body[0].value
    assert type(call) is cst.Call and [arg.star for arg in call.args] == ["", "*", "", "", "*", "**"]


def test_relative_import_dots() -> None:
    light, _ = light_module("from ...a import b\nfrom . import c\n")
    assert [len(line.body[0].relative) for line in light.body] == [3, 1]


def test_match_is_unsupported() -> None:
    with pytest.raises(Unsupported):
        light_module("match command:\n    case [x, y]:\n        pass\n    case _:\n        pass\n")


def test_bad_source_raises_syntax_error() -> None:
    for source in ("def f(:\n", "x = (1,\n", "x = 1\n  y = 2\n", "a\0b\n"):
        with pytest.raises(SyntaxError):
            light_module(source)


def test_names_without_positions_in_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before Python 3.10 an import's names carry no positions: they are found in the source."""
    source = "import a.b as c, d  # é\nfrom .e import (f as g,\n    h)\n"
    parse = ast.parse

    def without_alias_positions(text: str, *args: Any, **kwargs: Any) -> ast.Module:
        tree = parse(text, *args, **kwargs)
        for node in ast.walk(tree):
            if isinstance(node, ast.alias):
                for attribute in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
                    node.__dict__.pop(attribute, None)
        return tree

    monkeypatch.setattr("tapefix.analysis.lighttree.ast.parse", without_alias_positions)
    light, ranges = light_module(source)
    assert shape(light) == shape(cst.parse_module(source))
    names = {node.value: ranges[node] for node in ranges if isinstance(node, cst.Name)}
    assert names == {
        "a": (1, 7, 1, 8),
        "b": (1, 9, 1, 10),
        "c": (1, 14, 1, 15),
        "d": (1, 17, 1, 18),
        "e": (2, 6, 2, 7),
        "f": (2, 16, 2, 17),
        "g": (2, 21, 2, 22),
        "h": (3, 4, 3, 5),
    }


# ------------------------------------------------------------------------------------ real files


def _python_files() -> List[Path]:
    files = sorted((ROOT / "corpus").rglob("*.py")) + sorted((ROOT / "tapefix").rglob("*.py"))
    assert files
    return files


@pytest.mark.parametrize("path", _python_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_project_files(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    if any(type(node).__name__ == "Match" for node in ast.walk(ast.parse(source))):
        pytest.skip("a match statement: light_module leaves it to libcst")
    assert_same_tree(source, positions=path.parts[-2] == "corpus")
