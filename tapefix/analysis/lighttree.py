"""A libcst tree built from Python's ``ast``, for analyses that only read the tree.

libcst's parser is most of the time of a check, and ``ast.parse`` is several times faster. A check
only asks whether a module has a finding, which needs the tree's structure but not its whitespace;
a fix needs byte-exact whitespace, and parses the module with libcst again. ``light_module`` parses
with ``ast`` and converts the result into the libcst tree that ``libcst.parse_module`` would give,
node for node: the same classes, the same names, numbers and string texts (taken from the source, so
``1e-3`` stays ``1e-3`` and ``'a'`` stays ``'a'``), the same operators, the same optional parts set
or left out. What ``ast`` does not keep is rebuilt from the source: where ``;`` joins statements on
one line, a one-line suite after a header, ``elif``, implicit string concatenation and the parts of
f-strings, a parenthesized tuple in a subscript.

Whitespace, comments, parentheses and commas are left at shared defaults (one whitespace object for
the whole tree, empty ``lpar``/``rpar``): ``walk`` skips them, and ``module.code_for_node`` still
generates code, though not the source's text (without the parentheses, not always valid Python
either). Nodes are made without libcst's constructors, whose validation and default factories make a
node cost three to four times as much: ``object.__new__`` and the slots' own setters, every field
set, each node an ordinary instance of its libcst class.

Positions come with the tree: for each expression and statement (and each name, keyword argument,
except clause, imported name and slice), its range in the convention of libcst's ``PositionProvider``
(lines from 1, columns in code points, the node's own parentheses left out) for the source as
``tapefix.layout.parseable`` gives it to libcst, i.e. true places in the source.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import re
import unicodedata
import warnings
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import libcst as cst

Range = Tuple[int, int, int, int]

_DEFAULT = cst.MaybeSentinel.DEFAULT


class Unsupported(Exception):
    """syntax the converter does not map; the caller parses with libcst instead"""


# ------------------------------------------------------------------------------------ node builders


_SETTERS: Dict[type, Dict[str, Callable[[Any, Any], None]]] = {}
_DEFAULTS: Dict[type, Dict[str, Any]] = {}


def _builder(cls: type, params: Sequence[str] = (), **fixed: Any) -> Callable[..., Any]:
    """A function that makes a ``cls`` from ``params`` (positional, in that order) without running its
    constructor: the other fields get ``fixed`` values or libcst's defaults, made once and shared."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = (set(params) | set(fixed)) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    namespace: Dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make_{cls.__name__}({', '.join(params)}):", "    o = _new(_cls)"]
    for field in dataclasses.fields(cls):
        name = field.name
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        if name in params:
            value = name
        else:
            if name in fixed:
                default = fixed[name]
            elif field.default is not dataclasses.MISSING:
                default = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            else:
                raise TypeError(f"{cls.__name__}.{name} needs a value")
            value = f"_d_{name}"
            namespace[value] = default
        lines.append(f"    _set_{name}(o, {value})")
    lines.append("    return o")
    exec("\n".join(lines), namespace)  # noqa: S102 - code generated from libcst's own field lists
    # for the handlers that make their node in place: each field's setter, and the shared defaults
    _SETTERS[cls] = {name: namespace[f"_set_{name}"] for name in names}
    _DEFAULTS[cls] = {name: namespace[f"_d_{name}"] for name in names if f"_d_{name}" in namespace}
    make: Callable[..., Any] = namespace[f"make_{cls.__name__}"]
    return make


_WS = cst.SimpleWhitespace("")

_Name = _builder(cst.Name, ("value",))
_Integer = _builder(cst.Integer, ("value",))
_Float = _builder(cst.Float, ("value",))
_Imaginary = _builder(cst.Imaginary, ("value",))
_SimpleString = _builder(cst.SimpleString, ("value",))
_Ellipsis = _builder(cst.Ellipsis)
_Attribute = _builder(cst.Attribute, ("value", "attr"))
_Call = _builder(cst.Call, ("func", "args"))
_Arg = _builder(cst.Arg, ("value", "keyword", "star"))
_BinaryOperation = _builder(cst.BinaryOperation, ("left", "operator", "right"))
_UnaryOperation = _builder(cst.UnaryOperation, ("operator", "expression"))
_BooleanOperation = _builder(cst.BooleanOperation, ("left", "operator", "right"))
_Comparison = _builder(cst.Comparison, ("left", "comparisons"))
_ComparisonTarget = _builder(cst.ComparisonTarget, ("operator", "comparator"))
_Lambda = _builder(cst.Lambda, ("params", "body"))
_Parameters = _builder(
    cst.Parameters, ("params", "star_arg", "kwonly_params", "star_kwarg", "posonly_params", "posonly_ind")
)
_Param = _builder(cst.Param, ("name", "annotation", "default", "star"))
_ParamStar = _builder(cst.ParamStar)
_ParamSlash = _builder(cst.ParamSlash)
_Annotation = _builder(cst.Annotation, ("annotation",))
_IfExp = _builder(cst.IfExp, ("test", "body", "orelse"))
_Dict = _builder(cst.Dict, ("elements",))
_DictElement = _builder(cst.DictElement, ("key", "value"))
_StarredDictElement = _builder(cst.StarredDictElement, ("value",))
_Set = _builder(cst.Set, ("elements",))
_List = _builder(cst.List, ("elements",))
_Tuple = _builder(cst.Tuple, ("elements",))
_Element = _builder(cst.Element, ("value",))
_StarredElement = _builder(cst.StarredElement, ("value",))
_ListComp = _builder(cst.ListComp, ("elt", "for_in"))
_SetComp = _builder(cst.SetComp, ("elt", "for_in"))
_GeneratorExp = _builder(cst.GeneratorExp, ("elt", "for_in"))
_DictComp = _builder(cst.DictComp, ("key", "value", "for_in"))
_CompFor = _builder(cst.CompFor, ("target", "iter", "ifs", "inner_for_in", "asynchronous"))
_CompIf = _builder(cst.CompIf, ("test",))
_Await = _builder(cst.Await, ("expression",))
_Yield = _builder(cst.Yield, ("value",))
_From = _builder(cst.From, ("item",))
_Subscript = _builder(cst.Subscript, ("value", "slice"))
_SubscriptElement = _builder(cst.SubscriptElement, ("slice",))
_Index = _builder(cst.Index, ("value",))
_StarIndex = _builder(cst.Index, ("value",), star="*", whitespace_after_star=_WS)
_Slice = _builder(cst.Slice, ("lower", "upper", "step"))
_NamedExpr = _builder(cst.NamedExpr, ("target", "value"))
_ConcatenatedString = _builder(cst.ConcatenatedString, ("left", "right"))
_FormattedString = _builder(cst.FormattedString, ("parts", "start", "end"))
_FormattedStringText = _builder(cst.FormattedStringText, ("value",))
_FormattedStringExpression = _builder(
    cst.FormattedStringExpression, ("expression", "conversion", "format_spec", "equal")
)
_Asynchronous = _builder(cst.Asynchronous)

_Expr = _builder(cst.Expr, ("value",))
_Assign = _builder(cst.Assign, ("targets", "value"))
_AssignTarget = _builder(cst.AssignTarget, ("target",))
_AugAssign = _builder(cst.AugAssign, ("target", "operator", "value"))
_AnnAssign = _builder(cst.AnnAssign, ("target", "annotation", "value", "equal"))
_Return = _builder(cst.Return, ("value",))
_Del = _builder(cst.Del, ("target",))
_Pass = _builder(cst.Pass)
_Break = _builder(cst.Break)
_Continue = _builder(cst.Continue)
_Raise = _builder(cst.Raise, ("exc", "cause"))
_Assert = _builder(cst.Assert, ("test", "msg"))
_Global = _builder(cst.Global, ("names",))
_Nonlocal = _builder(cst.Nonlocal, ("names",))
_NameItem = _builder(cst.NameItem, ("name",))
_Import = _builder(cst.Import, ("names",))
_ImportFrom = _builder(cst.ImportFrom, ("module", "names", "relative", "lpar", "rpar"))
_ImportAlias = _builder(cst.ImportAlias, ("name", "asname"))
_ImportStar = _builder(cst.ImportStar)
_AsName = _builder(cst.AsName, ("name",))
_SimpleStatementLine = _builder(cst.SimpleStatementLine, ("body",))
_SimpleStatementSuite = _builder(cst.SimpleStatementSuite, ("body",))
_IndentedBlock = _builder(cst.IndentedBlock, ("body",))
_FunctionDef = _builder(cst.FunctionDef, ("name", "params", "body", "decorators", "returns", "asynchronous"))
_Decorator = _builder(cst.Decorator, ("decorator",))
_ClassDef = _builder(cst.ClassDef, ("name", "body", "bases", "keywords", "decorators"))
_If = _builder(cst.If, ("test", "body", "orelse"))
_Else = _builder(cst.Else, ("body",))
_For = _builder(cst.For, ("target", "iter", "body", "orelse", "asynchronous"))
_While = _builder(cst.While, ("test", "body", "orelse"))
_With = _builder(cst.With, ("items", "body", "asynchronous"))
_WithItem = _builder(cst.WithItem, ("item", "asname"))
_Try = _builder(cst.Try, ("body", "handlers", "orelse", "finalbody"))
_TryStar = _builder(cst.TryStar, ("body", "handlers", "orelse", "finalbody"))
_ExceptHandler = _builder(cst.ExceptHandler, ("body", "type", "name"))
_ExceptStarHandler = _builder(cst.ExceptStarHandler, ("body", "type", "name"))
_Finally = _builder(cst.Finally, ("body",))
_Module = _builder(cst.Module, ("body", "default_indent", "default_newline", "has_trailing_newline"))

_DOT = cst.Dot()
_ASSIGN_EQUAL = cst.AssignEqual()
_LPAR = cst.LeftParen()
_RPAR = cst.RightParen()

_BINARY = {
    ast.Add: _builder(cst.Add),
    ast.Sub: _builder(cst.Subtract),
    ast.Mult: _builder(cst.Multiply),
    ast.MatMult: _builder(cst.MatrixMultiply),
    ast.Div: _builder(cst.Divide),
    ast.Mod: _builder(cst.Modulo),
    ast.Pow: _builder(cst.Power),
    ast.LShift: _builder(cst.LeftShift),
    ast.RShift: _builder(cst.RightShift),
    ast.BitOr: _builder(cst.BitOr),
    ast.BitXor: _builder(cst.BitXor),
    ast.BitAnd: _builder(cst.BitAnd),
    ast.FloorDiv: _builder(cst.FloorDivide),
}
_AUGMENTED = {
    ast.Add: _builder(cst.AddAssign),
    ast.Sub: _builder(cst.SubtractAssign),
    ast.Mult: _builder(cst.MultiplyAssign),
    ast.MatMult: _builder(cst.MatrixMultiplyAssign),
    ast.Div: _builder(cst.DivideAssign),
    ast.Mod: _builder(cst.ModuloAssign),
    ast.Pow: _builder(cst.PowerAssign),
    ast.LShift: _builder(cst.LeftShiftAssign),
    ast.RShift: _builder(cst.RightShiftAssign),
    ast.BitOr: _builder(cst.BitOrAssign),
    ast.BitXor: _builder(cst.BitXorAssign),
    ast.BitAnd: _builder(cst.BitAndAssign),
    ast.FloorDiv: _builder(cst.FloorDivideAssign),
}
_UNARY = {
    ast.Invert: _builder(cst.BitInvert),
    ast.Not: _builder(cst.Not),
    ast.UAdd: _builder(cst.Plus),
    ast.USub: _builder(cst.Minus),
}
_BOOLEAN = {ast.And: _builder(cst.And), ast.Or: _builder(cst.Or)}
_COMPARE = {
    ast.Eq: _builder(cst.Equal),
    ast.NotEq: _builder(cst.NotEqual, value="!="),
    ast.Lt: _builder(cst.LessThan),
    ast.LtE: _builder(cst.LessThanEqual),
    ast.Gt: _builder(cst.GreaterThan),
    ast.GtE: _builder(cst.GreaterThanEqual),
    ast.Is: _builder(cst.Is),
    ast.IsNot: _builder(cst.IsNot),
    ast.In: _builder(cst.In),
    ast.NotIn: _builder(cst.NotIn),
}

# ------------------------------------------------------------------------------------ source scanning

#: one string literal, prefix and quotes included (a backslash escapes the next character, a newline too)
_STRING = re.compile(
    r"""[A-Za-z]{0,2}(?:'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''"""
    r"""|\"\"\"[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*\"\"\""""
    r"""|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|"[^"\\\n]*(?:\\.[^"\\\n]*)*")""",
    re.S,
)
#: what may stand between the strings of an implicit concatenation
_GAP = re.compile(r"(?:[ \t\f\r\n]+|\\\r?\n|#[^\r\n]*)*")
#: an identifier (any non-ASCII character counts as a letter: elsewhere it can only be in a comment or
#: a string, which the callers never scan), or a comment to skip
_WORD = re.compile(r"#.*|(?:[^\W\d]|[^\x00-\x7f])(?:\w|[^\x00-\x7f])*")
_DEF = re.compile(r"(?:async[ \t\f]+)?def[ \t\f]+")
_CLASS = re.compile(r"class[ \t\f]+")
_FSTRING_STOP = re.compile(r"[{}\\]")
_BLANK = " \t\f\r"


def _nfkc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


class _State:
    """The source being converted and the positions gathered so far."""

    __slots__ = ("source", "lines", "na", "nn", "encoded", "pos", "fixed", "has_semicolon", "indent")

    def __init__(self, source: str) -> None:
        if "\r" in source and re.search("\r(?!\n)", source):
            raise Unsupported("a line ends with a lone carriage return")
        self.source = source
        #: the physical lines (a CRLF line keeps its CR)
        self.lines = source.split("\n")
        #: lines (from 1) that are not ASCII: ast counts their columns in UTF-8 bytes
        self.na: FrozenSet[int] = frozenset()
        #: lines whose text NFKC normalization changes: their identifiers can differ from ast's
        self.nn: FrozenSet[int] = frozenset()
        if not source.isascii():
            na = [number for number, line in enumerate(self.lines, 1) if not line.isascii()]
            self.na = frozenset(na)
            self.nn = frozenset(n for n in na if not unicodedata.is_normalized("NFKC", self.lines[n - 1]))
        self.encoded: Dict[int, bytes] = {}
        #: ranges as ast gives them (columns in bytes)
        self.pos: Dict[cst.CSTNode, Range] = {}
        #: ranges already in code points
        self.fixed: Dict[cst.CSTNode, Range] = {}
        self.has_semicolon = ";" in source
        self.indent: Optional[str] = None

    # -- columns
    def cp(self, line: int, col: int) -> int:
        """The code point column of byte column ``col`` on ``line``."""
        if line not in self.na:
            return col
        data = self.encoded.get(line)
        if data is None:
            data = self.encoded[line] = self.lines[line - 1].encode()
        return len(data[:col].decode())

    def bytecol(self, line: int, col: int) -> int:
        if line not in self.na:
            return col
        return len(self.lines[line - 1][:col].encode())

    def cut(self, line: int, start: int, end: Optional[int]) -> str:
        """Part of a line, between byte columns."""
        text = self.lines[line - 1]
        if line in self.na:
            data = self.encoded.get(line)
            if data is None:
                data = self.encoded[line] = text.encode()
            return data[start:end].decode()
        return text[start:end]

    def char_before(self, line: int, col: int) -> str:
        """The character that ends at byte column ``col`` if it is ASCII (else "")."""
        if line in self.na:
            data = self.encoded.get(line)
            if data is None:
                data = self.encoded[line] = self.lines[line - 1].encode()
            byte = data[col - 1 : col]
            return byte.decode() if byte.isascii() else ""
        return self.lines[line - 1][col - 1 : col]

    def text(self, line: int, col: int, end_line: int, end_col: int) -> str:
        """The source between two ast positions."""
        if line == end_line:
            return self.cut(line, col, end_col)
        middle = self.lines[line : end_line - 1]
        return "\n".join([self.cut(line, col, None), *middle, self.cut(end_line, 0, end_col)])

    # -- scanning, in code point columns
    def next_token(self, line: int, col: int, logical: bool = False) -> Tuple[int, int, str]:
        """The first character at or after (line, col) that is not whitespace, a comment or a line
        continuation: its line, column and itself ("" at the end of the source, or with ``logical``
        at the end of the logical line)."""
        lines = self.lines
        count = len(lines)
        while line <= count:
            text = lines[line - 1]
            size = len(text)
            while col < size and text[col] in _BLANK:
                col += 1
            if col < size:
                char = text[col]
                if char == "\\" and not text[col + 1 :].strip(_BLANK):
                    line, col = line + 1, 0
                    continue
                if char != "#":
                    return line, col, char
            if logical:
                return line, col, ""
            line, col = line + 1, 0
        return line, 0, ""

    def extend(
        self, line: int, col: int, limit: Optional[Tuple[int, int]] = None, comma: bool = True
    ) -> Tuple[int, int]:
        """Where an expression ending at (line, col) ends with the parentheses that close after it
        (not the one at ``limit``) and, with ``comma``, a trailing comma."""
        while True:
            at_line, at_col, char = self.next_token(line, col)
            if limit is not None and (at_line, at_col) == limit:
                return line, col
            if char == ")":
                line, col = at_line, at_col + 1
                continue
            if char == "," and comma:
                return at_line, at_col + 1
            return line, col

    def words(self, line: int, col: int, expected: Sequence[str]) -> List[Tuple[int, int, str]]:
        """The identifiers ``expected`` (as ast spells them) in the source from (line, col) on, in
        order: each as (line, code point column, source text)."""
        found: List[Tuple[int, int, str]] = []
        want = iter(expected)
        target = next(want, None)
        lines = self.lines
        while target is not None:
            if line > len(lines):
                raise Unsupported(f"identifier {target!r} not found in the source")
            text = lines[line - 1]
            for match in _WORD.finditer(text, col):
                word = match.group()
                if word[0] == "#":
                    break
                if word == target or (not word.isascii() and _nfkc(word) == target):
                    found.append((line, match.start(), word))
                    target = next(want, None)
                    if target is None:
                        break
            line, col = line + 1, 0
        return found

    def word_at(self, line: int, col: int) -> str:
        """The identifier starting at code point column ``col``."""
        match = _WORD.match(self.lines[line - 1], col)
        if match is None or match.group()[0] == "#":
            raise Unsupported("no identifier where ast has one")
        return match.group()

    def word_before(self, line: int, col: int) -> str:
        """The identifier ending at code point column ``col``."""
        text = self.lines[line - 1]
        start = col
        while start > 0 and ("a" + text[start - 1]).isidentifier():
            start -= 1
        return text[start:col]


# ------------------------------------------------------------------------------------ expressions


class _Handlers(Dict[type, Callable[[_State, Any], Any]]):
    """Converters by ast class; a class without one is syntax the converter does not map."""

    def __missing__(self, kind: type) -> Any:
        raise Unsupported(f"{kind.__name__} is not mapped")


_E = _Handlers()


def _opt(s: _State, n: Any) -> Any:
    return None if n is None else _E[n.__class__](s, n)


# The commonest nodes are made in place rather than through their builders (a call less each).
def _setters(cls: type, *names: str) -> Tuple[Callable[[Any, Any], None], ...]:
    """The setters of the fields ``names`` of ``cls``, which must name every field (a handler that makes
    its node in place sets them all)."""
    fields = sorted(f.name for f in dataclasses.fields(cls))
    if fields != sorted(names):
        raise TypeError(f"libcst's {cls.__name__} has the fields {fields}, not {sorted(names)}")
    return tuple(_SETTERS[cls][name] for name in names)


_new = object.__new__
_NameClass = cst.Name
_set_name_value, _set_name_lpar, _set_name_rpar = _setters(cst.Name, "value", "lpar", "rpar")
_AttributeClass = cst.Attribute
_set_attribute_value, _set_attribute_attr, _set_attribute_dot, _set_attribute_lpar, _set_attribute_rpar = _setters(
    cst.Attribute, "value", "attr", "dot", "lpar", "rpar"
)
_ATTRIBUTE_DOT = _DEFAULTS[cst.Attribute]["dot"]
_CallClass = cst.Call
_set_call_func, _set_call_args, _set_call_lpar, _set_call_rpar, _set_call_ws_func, _set_call_ws_args = _setters(
    cst.Call, "func", "args", "lpar", "rpar", "whitespace_after_func", "whitespace_before_args"
)
_CALL_WS_FUNC = _DEFAULTS[cst.Call]["whitespace_after_func"]
_CALL_WS_ARGS = _DEFAULTS[cst.Call]["whitespace_before_args"]
_ArgClass = cst.Arg
(
    _set_arg_value,
    _set_arg_keyword,
    _set_arg_equal,
    _set_arg_comma,
    _set_arg_star,
    _set_arg_ws_star,
    _set_arg_ws_arg,
) = _setters(cst.Arg, "value", "keyword", "equal", "comma", "star", "whitespace_after_star", "whitespace_after_arg")
_ARG_WS_STAR = _DEFAULTS[cst.Arg]["whitespace_after_star"]
_ARG_WS_ARG = _DEFAULTS[cst.Arg]["whitespace_after_arg"]


def _name(s: _State, n: Any) -> Any:
    line = n.lineno
    node = _new(_NameClass)
    if s.nn and line in s.nn:
        _set_name_value(node, s.text(line, n.col_offset, n.end_lineno, n.end_col_offset))
    else:
        _set_name_value(node, n.id)
    _set_name_lpar(node, ())
    _set_name_rpar(node, ())
    s.pos[node] = (line, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _word(s: _State, value: str, line: int, col: int) -> Any:
    """A Name for the identifier that ast spells ``value`` and that starts at byte column ``col``."""
    if s.nn and line in s.nn:
        start = s.cp(line, col)
        text = s.word_at(line, start)
        node = _Name(text)
        s.fixed[node] = (line, start, line, start + len(text))
        return node
    node = _Name(value)
    s.pos[node] = (line, col, line, col + (len(value) if value.isascii() else len(value.encode())))
    return node


def _found_word(s: _State, found: Tuple[int, int, str]) -> Any:
    line, col, text = found
    node = _Name(text)
    s.fixed[node] = (line, col, line, col + len(text))
    return node


def _constant(s: _State, n: Any) -> Any:
    value = n.value
    kind = value.__class__
    if kind is str or kind is bytes:
        return _string(s, n)
    if kind is bool or value is None:
        node = _Name(str(value))
    elif value is Ellipsis:
        node = _Ellipsis()
    else:
        text = s.cut(n.lineno, n.col_offset, n.end_col_offset)
        if kind is int:
            node = _Integer(text)
        elif kind is float:
            node = _Float(text)
        elif kind is complex:
            node = _Imaginary(text)
        else:  # pragma: no cover - ast makes no other constants from source
            raise Unsupported(f"constant of type {kind.__name__}")
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _attribute(s: _State, n: Any) -> Any:
    line, end = n.end_lineno, n.end_col_offset
    attr = n.attr
    if s.nn and line in s.nn:
        stop = s.cp(line, end)
        text = s.word_before(line, stop)
        name = _Name(text)
        s.fixed[name] = (line, stop - len(text), line, stop)
    else:
        name = _new(_NameClass)
        _set_name_value(name, attr)
        _set_name_lpar(name, ())
        _set_name_rpar(name, ())
        s.pos[name] = (line, end - (len(attr) if attr.isascii() else len(attr.encode())), line, end)
    value = n.value
    node = _new(_AttributeClass)
    _set_attribute_value(node, _E[value.__class__](s, value))
    _set_attribute_attr(node, name)
    _set_attribute_dot(node, _ATTRIBUTE_DOT)
    _set_attribute_lpar(node, ())
    _set_attribute_rpar(node, ())
    s.pos[node] = (n.lineno, n.col_offset, line, end)
    return node


def _call_args(s: _State, args: List[Any], keywords: List[Any]) -> List[Any]:
    out = []
    pos = s.pos
    for a in args:
        kind = a.__class__
        node = _new(_ArgClass)
        if kind is ast.Starred:
            value = a.value
            _set_arg_value(node, _E[value.__class__](s, value))
            _set_arg_star(node, "*")
            pos[node] = (a.lineno, a.col_offset, a.end_lineno, a.end_col_offset)
        else:
            _set_arg_value(node, _E[kind](s, a))
            _set_arg_star(node, "")
        _set_arg_keyword(node, None)
        _set_arg_equal(node, _DEFAULT)
        _set_arg_comma(node, _DEFAULT)
        _set_arg_ws_star(node, _ARG_WS_STAR)
        _set_arg_ws_arg(node, _ARG_WS_ARG)
        out.append(node)
    if keywords:
        if args and (keywords[0].lineno, keywords[0].col_offset) < (args[-1].lineno, args[-1].col_offset):
            # keywords and starred arguments mixed: source order
            order = sorted(
                [(a.lineno, a.col_offset, i, a) for i, a in enumerate(args)]
                + [(k.lineno, k.col_offset, len(args) + i, k) for i, k in enumerate(keywords)]
            )
            converted = dict(zip(range(len(args)), out))
            out = []
            for _, _, i, item in order:
                out.append(converted[i] if i < len(args) else _keyword(s, item))
        else:
            for k in keywords:
                out.append(_keyword(s, k))
    return out


def _keyword(s: _State, k: Any) -> Any:
    value = _E[k.value.__class__](s, k.value)
    if k.arg is None:
        node = _Arg(value, None, "**")
    else:
        node = _Arg(value, _word(s, k.arg, k.lineno, k.col_offset), "")
    s.pos[node] = (k.lineno, k.col_offset, k.end_lineno, k.end_col_offset)
    return node


def _call(s: _State, n: Any) -> Any:
    func = n.func
    node = _new(_CallClass)
    _set_call_func(node, _E[func.__class__](s, func))
    args, keywords = n.args, n.keywords
    _set_call_args(node, _call_args(s, args, keywords) if args or keywords else ())
    _set_call_lpar(node, ())
    _set_call_rpar(node, ())
    _set_call_ws_func(node, _CALL_WS_FUNC)
    _set_call_ws_args(node, _CALL_WS_ARGS)
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _binop(s: _State, n: Any) -> Any:
    node = _BinaryOperation(
        _E[n.left.__class__](s, n.left), _BINARY[n.op.__class__](), _E[n.right.__class__](s, n.right)
    )
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _unaryop(s: _State, n: Any) -> Any:
    node = _UnaryOperation(_UNARY[n.op.__class__](), _E[n.operand.__class__](s, n.operand))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _boolop(s: _State, n: Any) -> Any:
    values = n.values
    operator = _BOOLEAN[n.op.__class__]
    left = _E[values[0].__class__](s, values[0])
    start = None
    for index in range(1, len(values)):
        value = values[index]
        if index > 1:
            # libcst nests ``a and b and c`` to the left: the inner operation ends after ``b``
            if start is None:
                start = (n.lineno, s.cp(n.lineno, n.col_offset))
            previous = values[index - 1]
            end_line = previous.end_lineno
            end = s.extend(end_line, s.cp(end_line, previous.end_col_offset), comma=False)
            s.fixed[left] = (start[0], start[1], end[0], end[1])
        left = _BooleanOperation(left, operator(), _E[value.__class__](s, value))
    s.pos[left] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return left


def _compare(s: _State, n: Any) -> Any:
    targets = [
        _ComparisonTarget(_COMPARE[op.__class__](), _E[right.__class__](s, right))
        for op, right in zip(n.ops, n.comparators)
    ]
    node = _Comparison(_E[n.left.__class__](s, n.left), targets)
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _param(s: _State, a: Any, default: Optional[ast.expr], star: str) -> Any:
    annotation = a.annotation
    return _Param(
        _word(s, a.arg, a.lineno, a.col_offset),
        None if annotation is None else _Annotation(_E[annotation.__class__](s, annotation)),
        None if default is None else _E[default.__class__](s, default),
        star,
    )


def _parameters(s: _State, a: Any) -> Any:
    posonly = a.posonlyargs
    positional = posonly + a.args if posonly else a.args
    defaults = a.defaults
    first_default = len(positional) - len(defaults)
    params = [
        _param(s, arg, defaults[i - first_default] if i >= first_default else None, "")
        for i, arg in enumerate(positional)
    ]
    if a.vararg is not None:
        star_arg = _param(s, a.vararg, None, "*")
    elif a.kwonlyargs:
        star_arg = _ParamStar()
    else:
        star_arg = _DEFAULT
    kwonly = [_param(s, arg, default, "") for arg, default in zip(a.kwonlyargs, a.kw_defaults)]
    star_kwarg = None if a.kwarg is None else _param(s, a.kwarg, None, "**")
    if posonly:
        count = len(posonly)
        return _Parameters(params[count:], star_arg, kwonly, star_kwarg, params[:count], _ParamSlash())
    return _Parameters(params, star_arg, kwonly, star_kwarg, (), _DEFAULT)


def _lambda(s: _State, n: Any) -> Any:
    node = _Lambda(_parameters(s, n.args), _E[n.body.__class__](s, n.body))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _ifexp(s: _State, n: Any) -> Any:
    node = _IfExp(_E[n.test.__class__](s, n.test), _E[n.body.__class__](s, n.body), _E[n.orelse.__class__](s, n.orelse))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _element(s: _State, e: Any) -> Any:
    if e.__class__ is ast.Starred:
        return _starred(s, e)
    return _Element(_E[e.__class__](s, e))


def _starred(s: _State, n: Any) -> Any:
    node = _StarredElement(_E[n.value.__class__](s, n.value))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _dict(s: _State, n: Any) -> Any:
    elements = []
    for key, value in zip(n.keys, n.values):
        if key is None:
            elements.append(_StarredDictElement(_E[value.__class__](s, value)))
        else:
            elements.append(_DictElement(_E[key.__class__](s, key), _E[value.__class__](s, value)))
    node = _Dict(elements)
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _set(s: _State, n: Any) -> Any:
    node = _Set([_element(s, e) for e in n.elts])
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _list(s: _State, n: Any) -> Any:
    node = _List([_element(s, e) for e in n.elts])
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _parenthesized(s: _State, n: Any) -> bool:
    """Whether the tuple has parentheses of its own (ast counts them in its range)."""
    elts = n.elts
    if not elts:
        return True
    first = elts[0]
    if first.lineno == n.lineno and first.col_offset == n.col_offset:
        return False
    before = s.text(n.lineno, n.col_offset, first.lineno, first.col_offset)
    if "#" in before:
        before = re.sub(r"#[^\r\n]*", "", before)
    # (an f-string's brace stands for the parenthesis that ast's parse of the expression added)
    opened = before.count("(") + before.count("{")
    line, col = first.end_lineno, s.cp(first.end_lineno, first.end_col_offset)
    closed = 0
    while True:
        line, col, char = s.next_token(line, col)
        if char != ")":
            break
        closed += 1
        col += 1
    return opened > closed


def _tuple(s: _State, n: Any) -> Any:
    node = _Tuple([_element(s, e) for e in n.elts])
    if _parenthesized(s, n):
        _inside(s, node, n, n.elts[-1] if n.elts else None, True)
    else:
        s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _inside(s: _State, node: cst.CSTNode, n: Any, last: Any, comma: bool) -> None:
    """Record the range of a node whose ast range includes its own parentheses: libcst's starts after
    them (and the space after the opening one) and ends after the last part (with a trailing comma)."""
    line = n.lineno
    start_line, start_col, _ = s.next_token(line, s.cp(line, n.col_offset) + 1)
    end_line = n.end_lineno
    limit = (end_line, s.cp(end_line, n.end_col_offset) - 1)
    if last is None:
        s.fixed[node] = (start_line, start_col, start_line, start_col)
        return
    last_line = last.end_lineno
    end = s.extend(last_line, s.cp(last_line, last.end_col_offset), limit, comma)
    s.fixed[node] = (start_line, start_col, end[0], end[1])


def _comp_for(s: _State, generators: List[Any]) -> Any:
    inner = None
    for g in reversed(generators):
        inner = _CompFor(
            _E[g.target.__class__](s, g.target),
            _E[g.iter.__class__](s, g.iter),
            [_CompIf(_E[t.__class__](s, t)) for t in g.ifs],
            inner,
            _Asynchronous() if g.is_async else None,
        )
    return inner


def _listcomp(s: _State, n: Any) -> Any:
    node = _ListComp(_E[n.elt.__class__](s, n.elt), _comp_for(s, n.generators))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _setcomp(s: _State, n: Any) -> Any:
    node = _SetComp(_E[n.elt.__class__](s, n.elt), _comp_for(s, n.generators))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _dictcomp(s: _State, n: Any) -> Any:
    node = _DictComp(_E[n.key.__class__](s, n.key), _E[n.value.__class__](s, n.value), _comp_for(s, n.generators))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _genexp(s: _State, n: Any) -> Any:
    node = _GeneratorExp(_E[n.elt.__class__](s, n.elt), _comp_for(s, n.generators))
    last = n.generators[-1]
    _inside(s, node, n, last.ifs[-1] if last.ifs else last.iter, False)
    return node


def _await(s: _State, n: Any) -> Any:
    node = _Await(_E[n.value.__class__](s, n.value))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _yield(s: _State, n: Any) -> Any:
    node = _Yield(_opt(s, n.value))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _yieldfrom(s: _State, n: Any) -> Any:
    node = _Yield(_From(_E[n.value.__class__](s, n.value)))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _slice_part(s: _State, e: Any) -> Any:
    kind = e.__class__
    if kind is ast.Slice:
        node = _Slice(_opt(s, e.lower), _opt(s, e.upper), _opt(s, e.step))
        line, end = e.end_lineno, e.end_col_offset
        if (e.step is None or e.upper is None) and s.char_before(line, end) == ":":
            # libcst counts the space after a last colon (up to the next token) into the slice
            at = s.next_token(line, s.cp(line, end))
            s.fixed[node] = (e.lineno, s.cp(e.lineno, e.col_offset), at[0], at[1])
        else:
            s.pos[node] = (e.lineno, e.col_offset, line, end)
        return node
    if kind is ast.Starred:
        return _StarIndex(_E[e.value.__class__](s, e.value))
    return _Index(_E[kind](s, e))


def _subscript(s: _State, n: Any) -> Any:
    value = _E[n.value.__class__](s, n.value)
    index = n.slice
    if index.__class__ is ast.Tuple and not _parenthesized(s, index):
        elements = [_SubscriptElement(_slice_part(s, e)) for e in index.elts]
    else:
        elements = [_SubscriptElement(_slice_part(s, index))]
    node = _Subscript(value, elements)
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _namedexpr(s: _State, n: Any) -> Any:
    node = _NamedExpr(_E[n.target.__class__](s, n.target), _E[n.value.__class__](s, n.value))
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _unexpected(s: _State, n: Any) -> Any:
    raise Unsupported(f"{type(n).__name__} outside its context")


# -- strings


def _string(s: _State, n: Any) -> Any:
    """A string constant or f-string, implicitly concatenated or not, from its source text."""
    line, col, last_line, last_col = n.lineno, n.col_offset, n.end_lineno, n.end_col_offset
    text = s.text(line, col, last_line, last_col)
    match = _STRING.match(text)
    if match is None:
        raise Unsupported("a string ast has that the scanner does not find")
    if match.end() == len(text) and n.__class__ is ast.Constant:
        node = _SimpleString(text)
        s.pos[node] = (line, col, last_line, last_col)
        return node
    tokens = [(0, match.group())]
    at = match.end()
    while at < len(text):
        at = _GAP.match(text, at).end()  # type: ignore[union-attr]
        match = _STRING.match(text, at)
        if match is None:
            raise Unsupported("a string concatenation the scanner does not split")
        tokens.append((at, match.group()))
        at = match.end()
    values = (
        iter([v for v in n.values if v.__class__ is ast.FormattedValue]) if n.__class__ is ast.JoinedStr else iter(())
    )
    start_col = s.cp(line, col)

    def place(offset: int) -> Tuple[int, int]:
        newlines = text.count("\n", 0, offset)
        if not newlines:
            return line, start_col + offset
        return line + newlines, offset - text.rfind("\n", 0, offset) - 1

    parts = []
    for offset, token in tokens:
        start = place(offset)
        if "f" in token[: token.find(token[-1])].lower():  # the prefix, before the first quote
            part = _fstring(s, token, start, values)
        else:
            part = _SimpleString(token)
        if len(tokens) > 1:
            end = place(offset + len(token))
            s.fixed[part] = (start[0], start[1], end[0], end[1])
        parts.append((start, part))
    if len(parts) == 1:
        node = parts[0][1]
        s.pos[node] = (line, col, n.end_lineno, n.end_col_offset)
        return node
    end_line, end_col = n.end_lineno, s.cp(n.end_lineno, n.end_col_offset)
    node = parts[-1][1]
    for index in range(len(parts) - 2, -1, -1):
        start, part = parts[index]
        node = _ConcatenatedString(part, node)
        s.fixed[node] = (start[0], start[1], end_line, end_col)
    s.fixed.pop(node)
    s.pos[node] = (line, col, n.end_lineno, n.end_col_offset)
    return node


def _fstring(s: _State, token: str, start: Tuple[int, int], values: Iterator[Any]) -> Any:
    prefix_size = 0
    while token[prefix_size] not in "'\"":
        prefix_size += 1
    prefix = token[:prefix_size]
    quote = token[prefix_size : prefix_size + 3]
    if quote not in ('"""', "'''"):
        quote = quote[0]
    body_start = prefix_size + len(quote)
    raw = "r" in prefix.lower()
    parser = _FStringParser(s, token, start, raw, values)
    parts, at = parser.parts(body_start, len(token) - len(quote), 0)
    if at != len(token) - len(quote):
        raise Unsupported("an f-string the scanner does not follow")
    return _FormattedString(parts, token[:body_start], quote)


class _FStringParser:
    """Splits an f-string into text and expressions the way CPython 3.11 (and libcst) do."""

    def __init__(self, s: _State, token: str, start: Tuple[int, int], raw: bool, values: Iterator[Any]) -> None:
        self.s = s
        self.token = token
        self.start = start
        self.raw = raw
        self.values = values
        #: where the expression parsed last ends
        self.after = 0

    def place(self, offset: int) -> Tuple[int, int]:
        token = self.token
        newlines = token.count("\n", 0, offset)
        if not newlines:
            return self.start[0], self.start[1] + offset
        return self.start[0] + newlines, offset - token.rfind("\n", 0, offset) - 1

    def parts(self, at: int, end: int, level: int) -> Tuple[List[cst.BaseFormattedStringContent], int]:
        token = self.token
        out: List[cst.BaseFormattedStringContent] = []
        text_start = at
        while at < end:
            match = _FSTRING_STOP.search(token, at, end)
            if match is None:
                at = end
                break
            at = match.start()
            char = token[at]
            if char == "\\":
                at += 1
                if self.raw or at >= end:
                    continue
                escaped = token[at]
                if escaped == "N":
                    # ``\N{NAME}``: its braces are not an expression's
                    at += 1
                    if at < end and token[at] == "{":
                        close = token.find("}", at, end)
                        at = end if close < 0 else close + 1
                elif escaped not in "{}":
                    at += 1  # an escaped brace still opens or closes an expression
                continue
            if level == 0 and at + 1 < end and token[at + 1] == char:
                at += 2  # a doubled brace is text
                continue
            if char == "}":
                if level == 0:
                    raise Unsupported("a single '}' in an f-string")
                break
            if at > text_start:
                out.append(_FormattedStringText(token[text_start:at]))
            out.append(self.expression(at, end, level))
            at = self.after
            text_start = at
        if at > text_start:
            out.append(_FormattedStringText(token[text_start:at]))
        return out, at

    def expression(self, at: int, end: int, level: int) -> Any:
        if level >= 2:
            raise Unsupported("f-string expressions nested too deeply")
        token = self.token
        # ast's node for this expression; those in its format spec come from the node's own spec
        value = next(self.values, None)
        at += 1
        expr_start = at
        depth = 0
        quote = ""
        triple = False
        while at < end:
            char = token[at]
            if quote:
                if char == quote:
                    if triple:
                        if token.startswith(quote * 3, at):
                            at += 3
                            quote = ""
                            continue
                    else:
                        quote = ""
                at += 1
                continue
            if char in "'\"":
                if token.startswith(char * 3, at):
                    triple = True
                    at += 3
                else:
                    triple = False
                    at += 1
                quote = char
                continue
            if char in "[({":
                depth += 1
            elif char in "])}" and depth > 0:
                depth -= 1
            elif depth == 0 and char in "!:}=<>":
                if at + 1 < end and token[at + 1] == "=" and char in "!=<>":
                    at += 2
                    continue
                if char not in "<>":
                    break
            at += 1
        expr_end = at
        if at >= end:
            raise Unsupported("an f-string expression without its end")
        equal = None
        if token[at] == "=":
            equal = _ASSIGN_EQUAL
            at += 1
            while at < end and token[at] in " \t\n\r\f\v":
                at += 1
        conversion = None
        if token[at] == "!":
            conversion = token[at + 1]
            at += 2
        format_spec = None
        if token[at] == ":":
            outer = self.values
            spec = getattr(value, "format_spec", None)
            self.values = iter(
                [v for v in spec.values if v.__class__ is ast.FormattedValue] if spec is not None else ()
            )
            format_spec, at = self.parts(at + 1, end, level + 1)
            self.values = outer
        if at >= end or token[at] != "}":
            raise Unsupported("an f-string expression without its closing brace")
        self.after = at + 1
        expression = self.convert(expr_start, expr_end, value)
        return _FormattedStringExpression(expression, conversion, format_spec, equal)

    def convert(self, start: int, end: int, value: Any) -> Any:
        s = self.s
        source = self.token[start:end]
        stripped = source.strip()
        first = start + len(source) - len(source.lstrip())
        line, col = self.place(first)
        if value is not None and "\n" not in source:
            v = value.value
            if (
                v.lineno == line
                and v.end_lineno == line
                and s.cp(line, v.col_offset) == col
                and s.cp(line, v.end_col_offset) == col + len(stripped)
            ):
                return _E[v.__class__](s, v)
        # ast's positions inside this f-string are not to be trusted: parse the expression again, where
        # it stands in the source
        line, col = self.place(start)
        expression: Any = ast.parse("(" + source + ")", mode="eval").body
        shift_col = s.bytecol(line, col) - 1
        node: Any
        for node in ast.walk(expression):
            if "lineno" in node._attributes:
                if node.lineno == 1:
                    node.col_offset += shift_col
                if node.end_lineno == 1:
                    node.end_col_offset += shift_col
                node.lineno += line - 1
                node.end_lineno += line - 1
        return _E[expression.__class__](s, expression)


_E.update(
    {
        ast.Name: _name,
        ast.Constant: _constant,
        ast.Attribute: _attribute,
        ast.Call: _call,
        ast.BinOp: _binop,
        ast.UnaryOp: _unaryop,
        ast.BoolOp: _boolop,
        ast.Compare: _compare,
        ast.Lambda: _lambda,
        ast.IfExp: _ifexp,
        ast.Dict: _dict,
        ast.Set: _set,
        ast.List: _list,
        ast.Tuple: _tuple,
        ast.ListComp: _listcomp,
        ast.SetComp: _setcomp,
        ast.DictComp: _dictcomp,
        ast.GeneratorExp: _genexp,
        ast.Await: _await,
        ast.Yield: _yield,
        ast.YieldFrom: _yieldfrom,
        ast.Subscript: _subscript,
        ast.Starred: _starred,
        ast.NamedExpr: _namedexpr,
        ast.JoinedStr: _string,
        ast.FormattedValue: _unexpected,
        ast.Slice: _unexpected,
    }
)

# ------------------------------------------------------------------------------------ statements

_S = _Handlers()
_SMALL = frozenset(
    {
        ast.Expr,
        ast.Assign,
        ast.AugAssign,
        ast.AnnAssign,
        ast.Return,
        ast.Delete,
        ast.Pass,
        ast.Break,
        ast.Continue,
        ast.Raise,
        ast.Global,
        ast.Nonlocal,
        ast.Import,
        ast.ImportFrom,
        ast.Assert,
    }
)


_LineClass = cst.SimpleStatementLine
_set_line_body, _set_line_leading, _set_line_trailing = _setters(
    cst.SimpleStatementLine, "body", "leading_lines", "trailing_whitespace"
)
_LINE_TRAILING = _DEFAULTS[cst.SimpleStatementLine]["trailing_whitespace"]


def _statements(s: _State, body: List[Any]) -> List[Any]:
    """Statements as libcst groups them: small statements joined by ``;`` share one line."""
    out: List[cst.BaseStatement] = []
    small = _SMALL
    count = len(body)
    index = 0
    while index < count:
        n = body[index]
        kind = n.__class__
        if kind not in small:
            out.append(_S[kind](s, n))
            index += 1
            continue
        line = [_S[kind](s, n)]
        index += 1
        if s.has_semicolon:
            while index < count and body[index].__class__ in small and _joined(s, n, body[index]):
                n = body[index]
                line.append(_S[n.__class__](s, n))
                index += 1
        node = _new(_LineClass)
        _set_line_body(node, line)
        _set_line_leading(node, ())
        _set_line_trailing(node, _LINE_TRAILING)
        out.append(node)
    return out


def _joined(s: _State, n: Any, following: Any) -> bool:
    """Whether ``following`` is on the logical line of ``n``, after a ``;``."""
    line, col, char = s.next_token(n.end_lineno, s.cp(n.end_lineno, n.end_col_offset), logical=True)
    if char != ";":
        return False
    line, col, char = s.next_token(line, col + 1, logical=True)
    return (line, col) == (following.lineno, s.cp(following.lineno, following.col_offset))


def _block(s: _State, header: Any, body: List[Any]) -> Any:
    """A header's body: a suite on the header's line, or an indented block."""
    first = body[0]
    line = first.lineno
    text = s.lines[line - 1]
    indent = len(text) - len(text.lstrip(" \t\f"))
    if first.col_offset != indent:
        suite = True
    else:
        # the statement starts its line: unless a backslash continues the header's line onto it
        previous = s.lines[line - 2] if line > 1 else ""
        suite = False
        if previous.rstrip("\r").endswith("\\"):
            code, comment, _ = previous.partition("#")
            if not comment:
                suite = code.rstrip("\r")[:-1].rstrip(_BLANK).endswith(":")
            elif code.strip(_BLANK) and (not code.rstrip(_BLANK).endswith(":") or "'" in code or '"' in code):
                # the "#" may be in a string, and the backslash continue the line
                raise Unsupported("a backslash at the end of a header with a # in it")
            # else a comment ends with the backslash: on its own line, or after the header's colon
    if suite:
        return _SimpleStatementSuite([_S[n.__class__](s, n) for n in body])
    if s.indent is None:
        header_text = s.lines[header.lineno - 1]
        header_indent = header_text[: len(header_text) - len(header_text.lstrip(" \t\f"))]
        own = text[:indent]
        s.indent = own[len(header_indent) :] if own.startswith(header_indent) and own != header_indent else own
    return _IndentedBlock(_statements(s, body))


def _stmt_pos(s: _State, node: cst.CSTNode, n: Any) -> Any:
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _last_statement(n: Any) -> Any:
    """The small statement a compound statement ends with."""
    while n.__class__ not in _SMALL:
        if getattr(n, "finalbody", None):
            n = n.finalbody[-1]
        elif getattr(n, "orelse", None):
            n = n.orelse[-1]
        elif getattr(n, "handlers", None):
            n = n.handlers[-1].body[-1]
        else:
            n = n.body[-1]
    return n


def _compound_pos(s: _State, node: cst.CSTNode, n: Any) -> Any:
    """Record a compound statement's (or handler's) range: ast's ends after a last ``;``, libcst's
    with the last statement."""
    end_line, end = n.end_lineno, n.end_col_offset
    if s.has_semicolon and s.char_before(end_line, end) == ";":
        last = _last_statement(n)
        end_line, end = last.end_lineno, last.end_col_offset
    s.pos[node] = (n.lineno, n.col_offset, end_line, end)
    return node


_ExprClass = cst.Expr
_set_expr_value, _set_expr_semicolon = _setters(cst.Expr, "value", "semicolon")
_AssignClass = cst.Assign
_set_assign_targets, _set_assign_value, _set_assign_semicolon = _setters(cst.Assign, "targets", "value", "semicolon")
_AssignTargetClass = cst.AssignTarget
_set_target_target, _set_target_ws_before, _set_target_ws_after = _setters(
    cst.AssignTarget, "target", "whitespace_before_equal", "whitespace_after_equal"
)
_TARGET_WS_BEFORE = _DEFAULTS[cst.AssignTarget]["whitespace_before_equal"]
_TARGET_WS_AFTER = _DEFAULTS[cst.AssignTarget]["whitespace_after_equal"]


def _expr_stmt(s: _State, n: Any) -> Any:
    value = n.value
    node = _new(_ExprClass)
    _set_expr_value(node, _E[value.__class__](s, value))
    _set_expr_semicolon(node, _DEFAULT)
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _assign(s: _State, n: Any) -> Any:
    targets = []
    for t in n.targets:
        target = _new(_AssignTargetClass)
        _set_target_target(target, _E[t.__class__](s, t))
        _set_target_ws_before(target, _TARGET_WS_BEFORE)
        _set_target_ws_after(target, _TARGET_WS_AFTER)
        targets.append(target)
    value = n.value
    node = _new(_AssignClass)
    _set_assign_targets(node, targets)
    _set_assign_value(node, _E[value.__class__](s, value))
    _set_assign_semicolon(node, _DEFAULT)
    s.pos[node] = (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)
    return node


def _augassign(s: _State, n: Any) -> Any:
    node = _AugAssign(
        _E[n.target.__class__](s, n.target), _AUGMENTED[n.op.__class__](), _E[n.value.__class__](s, n.value)
    )
    return _stmt_pos(s, node, n)


def _annassign(s: _State, n: Any) -> Any:
    value = n.value
    node = _AnnAssign(
        _E[n.target.__class__](s, n.target),
        _Annotation(_E[n.annotation.__class__](s, n.annotation)),
        None if value is None else _E[value.__class__](s, value),
        _DEFAULT if value is None else _ASSIGN_EQUAL,
    )
    return _stmt_pos(s, node, n)


def _return(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Return(_opt(s, n.value)), n)


def _delete(s: _State, n: Any) -> Any:
    targets = n.targets
    first = targets[0]
    last = targets[-1]
    end_line = last.end_lineno
    end = s.extend(end_line, s.cp(end_line, last.end_col_offset))
    tuple_end = (end_line, s.cp(end_line, last.end_col_offset))
    if len(targets) == 1 and end == s.extend(end_line, tuple_end[1], comma=False):
        return _stmt_pos(s, _Del(_E[first.__class__](s, first)), n)
    # ``del a, b`` (or ``del a,``): a tuple without parentheses
    target = _Tuple([_Element(_E[t.__class__](s, t)) for t in targets])
    start = s.next_token(n.lineno, s.cp(n.lineno, n.col_offset) + 3)
    s.fixed[target] = (start[0], start[1], end[0], end[1])
    return _stmt_pos(s, _Del(target), n)


def _pass(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Pass(), n)


def _break(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Break(), n)


def _continue(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Continue(), n)


def _raise(s: _State, n: Any) -> Any:
    cause = n.cause
    node = _Raise(_opt(s, n.exc), None if cause is None else _From(_E[cause.__class__](s, cause)))
    return _stmt_pos(s, node, n)


def _assert(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Assert(_E[n.test.__class__](s, n.test), _opt(s, n.msg)), n)


def _names(s: _State, n: Any) -> Any:
    found = s.words(n.lineno, s.cp(n.lineno, n.col_offset), n.names)
    return [_NameItem(_found_word(s, word)) for word in found]


def _global(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Global(_names(s, n)), n)


def _nonlocal(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Nonlocal(_names(s, n)), n)


def _dotted(s: _State, words: List[Tuple[int, int, str]]) -> Any:
    node: Any = _found_word(s, words[0])
    start = words[0]
    for word in words[1:]:
        node = _Attribute(node, _found_word(s, word))
        s.fixed[node] = (start[0], start[1], word[0], word[1] + len(word[2]))
    return node


def _alias(s: _State, a: Any) -> Any:
    name, asname = a.name, a.asname
    line, col = a.lineno, a.col_offset
    expected = name.split(".")
    if asname is not None:
        expected.append(asname)
    words = None
    if line == a.end_lineno and line not in s.nn:
        text = s.cut(line, col, a.end_col_offset)
        if text == name or (asname is not None and text == f"{name} as {asname}"):
            at = s.cp(line, col)
            words = []
            for word in expected:
                words.append((line, at, word))
                at += len(word) + 1
            if asname is not None:
                words[-1] = (line, s.cp(line, a.end_col_offset) - len(asname), asname)
    if words is None:
        words = s.words(line, s.cp(line, col), expected)
    if asname is not None:
        target = _AsName(_found_word(s, words.pop()))
    else:
        target = None
    node = _ImportAlias(_dotted(s, words), target)
    s.pos[node] = (line, col, a.end_lineno, a.end_col_offset)
    return node


def _aliases(s: _State, n: Any, skip: int) -> List[Any]:
    """The statement's imported names; ``skip`` names (the module's) come before them."""
    if hasattr(n.names[0], "lineno"):
        return [_alias(s, a) for a in n.names]
    # before Python 3.10 ast gives no positions for them: find them in the statement, in order
    expected: List[str] = [] if not skip else n.module.split(".")
    for a in n.names:
        expected.extend(a.name.split("."))
        if a.asname is not None:
            expected.append(a.asname)
    words = s.words(n.lineno, s.cp(n.lineno, n.col_offset), expected)[skip:]
    out = []
    for a in n.names:
        count = a.name.count(".") + 1
        name = _dotted(s, words[:count])
        del words[:count]
        target = None
        if a.asname is not None:
            target = _AsName(_found_word(s, words.pop(0)))
        out.append(_ImportAlias(name, target))
    return out


def _import(s: _State, n: Any) -> Any:
    return _stmt_pos(s, _Import(_aliases(s, n, 0)), n)


def _importfrom(s: _State, n: Any) -> Any:
    module = None
    if n.module is not None:
        module = _dotted(s, s.words(n.lineno, s.cp(n.lineno, n.col_offset), n.module.split(".")))
    relative = [_DOT] * (n.level or 0)
    if len(n.names) == 1 and n.names[0].name == "*":
        return _stmt_pos(s, _ImportFrom(module, _ImportStar(), relative, None, None), n)
    names = _aliases(s, n, 0 if n.module is None else n.module.count(".") + 1)
    end_line = n.end_lineno
    parenthesized = s.cut(end_line, 0, n.end_col_offset).endswith(")")
    node = _ImportFrom(module, names, relative, _LPAR if parenthesized else None, _RPAR if parenthesized else None)
    return _stmt_pos(s, node, n)


def _defname(s: _State, n: Any, pattern: re.Pattern[str]) -> Any:
    line = n.lineno
    col = s.cp(line, n.col_offset)
    match = pattern.match(s.lines[line - 1], col)
    name = n.name
    if match is not None and line not in s.nn and s.lines[line - 1].startswith(name, match.end()):
        return _found_word(s, (line, match.end(), name))
    return _found_word(s, s.words(line, col, [name])[0])


def _decorators(s: _State, n: Any) -> Any:
    return [_Decorator(_E[d.__class__](s, d)) for d in n.decorator_list]


def _functiondef(s: _State, n: Any) -> Any:
    if getattr(n, "type_params", None):
        raise Unsupported("type parameters")
    decorators = _decorators(s, n) if n.decorator_list else ()
    name = _defname(s, n, _DEF)
    params = _parameters(s, n.args)
    returns = n.returns
    node = _FunctionDef(
        name,
        params,
        _block(s, n, n.body),
        decorators,
        None if returns is None else _Annotation(_E[returns.__class__](s, returns)),
        _Asynchronous() if n.__class__ is ast.AsyncFunctionDef else None,
    )
    return _compound_pos(s, node, n)


def _classdef(s: _State, n: Any) -> Any:
    if getattr(n, "type_params", None):
        raise Unsupported("type parameters")
    decorators = _decorators(s, n) if n.decorator_list else ()
    name = _defname(s, n, _CLASS)
    bases = _call_args(s, n.bases, []) if n.bases else ()
    keywords = [_keyword(s, k) for k in n.keywords] if n.keywords else ()
    node = _ClassDef(name, _block(s, n, n.body), bases, keywords, decorators)
    return _compound_pos(s, node, n)


def _orelse(s: _State, n: Any, orelse: List[Any]) -> Any:
    if not orelse:
        return None
    return _Else(_block(s, n, orelse))


def _if(s: _State, n: Any) -> Any:
    test = _E[n.test.__class__](s, n.test)
    body = _block(s, n, n.body)
    orelse = n.orelse
    if not orelse:
        other = None
    elif len(orelse) == 1 and orelse[0].__class__ is ast.If and _is_elif(s, orelse[0]):
        other = _if(s, orelse[0])
    else:
        other = _Else(_block(s, n, orelse))
    return _compound_pos(s, _If(test, body, other), n)


def _is_elif(s: _State, n: Any) -> Any:
    line = n.lineno
    return s.lines[line - 1].startswith("elif", s.cp(line, n.col_offset))


def _for(s: _State, n: Any) -> Any:
    node = _For(
        _E[n.target.__class__](s, n.target),
        _E[n.iter.__class__](s, n.iter),
        _block(s, n, n.body),
        _orelse(s, n, n.orelse),
        _Asynchronous() if n.__class__ is ast.AsyncFor else None,
    )
    return _compound_pos(s, node, n)


def _while(s: _State, n: Any) -> Any:
    node = _While(_E[n.test.__class__](s, n.test), _block(s, n, n.body), _orelse(s, n, n.orelse))
    return _compound_pos(s, node, n)


def _with(s: _State, n: Any) -> Any:
    items = []
    for item in n.items:
        target = item.optional_vars
        items.append(
            _WithItem(
                _E[item.context_expr.__class__](s, item.context_expr),
                None if target is None else _AsName(_E[target.__class__](s, target)),
            )
        )
    node = _With(items, _block(s, n, n.body), _Asynchronous() if n.__class__ is ast.AsyncWith else None)
    return _compound_pos(s, node, n)


def _handler(s: _State, h: Any, make: Callable[..., Any]) -> Any:
    kind = h.type
    type_node = None if kind is None else _E[kind.__class__](s, kind)
    name = None
    if h.name is not None:
        if kind is None:  # pragma: no cover - not valid Python
            raise Unsupported("except without a type but with a name")
        line = kind.end_lineno
        name = _AsName(_found_word(s, s.words(line, s.cp(line, kind.end_col_offset), [h.name])[0]))
    return _compound_pos(s, make(_block(s, h, h.body), type_node, name), h)


def _try(s: _State, n: Any) -> Any:
    return _try_with(s, n, _Try, _ExceptHandler)


def _trystar(s: _State, n: Any) -> Any:
    return _try_with(s, n, _TryStar, _ExceptStarHandler)


def _try_with(s: _State, n: Any, make: Callable[..., Any], handler: Callable[..., Any]) -> Any:
    """``try`` and ``try``/``except*``: the same fields, their own node and handler classes."""
    node = make(
        _block(s, n, n.body),
        [_handler(s, h, handler) for h in n.handlers],
        _orelse(s, n, n.orelse),
        _Finally(_block(s, n, n.finalbody)) if n.finalbody else None,
    )
    return _compound_pos(s, node, n)


def _match(s: _State, n: Any) -> Any:
    raise Unsupported("match statement")


_S.update(
    {
        ast.Expr: _expr_stmt,
        ast.Assign: _assign,
        ast.AugAssign: _augassign,
        ast.AnnAssign: _annassign,
        ast.Return: _return,
        ast.Delete: _delete,
        ast.Pass: _pass,
        ast.Break: _break,
        ast.Continue: _continue,
        ast.Raise: _raise,
        ast.Assert: _assert,
        ast.Global: _global,
        ast.Nonlocal: _nonlocal,
        ast.Import: _import,
        ast.ImportFrom: _importfrom,
        ast.FunctionDef: _functiondef,
        ast.AsyncFunctionDef: _functiondef,
        ast.ClassDef: _classdef,
        ast.If: _if,
        ast.For: _for,
        ast.AsyncFor: _for,
        ast.While: _while,
        ast.With: _with,
        ast.AsyncWith: _with,
        ast.Try: _try,
    }
)
if hasattr(ast, "TryStar"):
    _S[ast.TryStar] = _trystar
if hasattr(ast, "Match"):
    _S[ast.Match] = _match


# ------------------------------------------------------------------------------------ entry point


def light_module(source: str) -> Tuple[cst.Module, Dict[cst.CSTNode, Range]]:
    """ast.parse(source) converted to a libcst Module; the dict gives, for each converted expression and
    statement node (every node ast has a position for, and every name), (start_line, start_column,
    end_line, end_column): lines 1-based, columns in code points, the same convention as libcst's
    PositionProvider ranges for that node (which exclude the node's own parentheses, like ast).

    Raises ``SyntaxError`` for source ast does not parse, and ``Unsupported`` for syntax the converter
    does not map exactly (a ``match`` statement, for one)."""
    if source.startswith("\ufeff"):
        source = source[1:]  # a byte order mark: libcst drops it too, and counts columns without it
    # The parse and the conversion make hundreds of thousands of objects and free none of them:
    # the cyclic garbage collector would walk them again and again for nothing (15% of the time).
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        try:
            with warnings.catch_warnings():
                # ast's compiler warns of invalid escape sequences and the like; libcst does not
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
        except ValueError as error:  # null bytes: ast's way of saying the source is not Python
            raise SyntaxError(str(error)) from error
        except RecursionError as error:  # too deep for ast's compiler, not necessarily for libcst
            raise Unsupported("nested too deeply for ast") from error
        return _convert(source, tree)
    finally:
        if collecting:
            gc.enable()


def _convert(source: str, tree: ast.Module) -> Tuple[cst.Module, Dict[cst.CSTNode, Range]]:
    if "barry_as_FLUFL" in source and any(
        statement.__class__ is ast.ImportFrom
        and statement.module == "__future__"
        and any(alias.name == "barry_as_FLUFL" for alias in statement.names)
        for statement in tree.body
    ):
        raise Unsupported("from __future__ import barry_as_FLUFL (the <> operator)")
    s = _State(source)
    try:
        body = _statements(s, tree.body)
    except RecursionError as error:
        raise Unsupported("nested too deeply to convert") from error
    newline = "\r\n" if "\r\n" in source[: source.find("\n") + 1] else "\n"
    module = _Module(body, s.indent or "    ", newline, source.endswith("\n"))
    positions = s.pos
    if s.na:
        na = s.na
        cp = s.cp
        for node, (line, col, end_line, end_col) in positions.items():
            if line in na or end_line in na:
                positions[node] = (line, cp(line, col), end_line, cp(end_line, end_col))
    positions.update(s.fixed)
    return module, positions
