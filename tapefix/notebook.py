"""Jupyter notebooks, pure: notebook text in, one Python module out; the fixed module back to notebook text.

The code cells of a notebook run in one namespace, in order, so they are analysed as **one module**:
a tape opened in one cell and a function (or the ``tensorflow`` import) defined in another are seen
together, just as the kernel sees them. The cells are joined in document order with a boundary line
(``# %% tapefix cell N``) between them; the fixed module is cut back at those lines.

IPython syntax is masked before parsing and restored afterwards: line magics (``%matplotlib inline``),
shell escapes (``!pip install``), help (``tf.floor?``), assignments from them (``files = !ls``) each
become a ``pass`` line carrying a marker, so lines and columns stay where they were. A cell magic whose
body is Python (``%%time``, ``%%timeit``, ``%%capture``, ...) is masked on its first line; a cell in
another language (``%%bash``, ``%%writefile``, ...) is left out. Only cells that do not parse as they
stand are masked at all.

Everything outside the changed cells' ``source`` survives: outputs, metadata, execution counts, and
the JSON layout (indentation, key order, escaping, trailing newline). A notebook whose layout cannot
be reproduced is never rewritten.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Cell magics whose body is Python and runs in the notebook's namespace.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "tensorflow_version"})
_BOUNDARY = "# %% tapefix cell {}"
_BOUNDARY_LINE = re.compile(r"^# %% tapefix cell (\d+)$")
_MAGIC_MARK = "pass  # tapefix magic {}"
_MAGIC_LINE = re.compile(r"^(?P<indent>[ \t]*)pass  # tapefix magic (?P<number>\d+)$")
_ASSIGNED_MAGIC = re.compile(r"^[ \t]*[A-Za-z_][\w\t ,.\[\]()*]*=[ \t]*[%!]")


class NotebookError(ValueError):
    """A notebook that cannot be read or written back; the message says why."""


@dataclass(frozen=True)
class Layout:
    """How the notebook's JSON was written, so it can be written back the same way."""

    indent: Optional[int]
    ensure_ascii: bool
    sort_keys: bool
    separators: Tuple[str, str]
    trailing_newline: bool


@dataclass(frozen=True)
class CellSpan:
    """Where one code cell sits in the joined module."""

    cell: int  #: 1-based position among all of the notebook's cells (as editors count them)
    first_line: int  #: 1-based line of the module where the cell's text starts
    line_count: int


@dataclass(frozen=True)
class Script:
    """A notebook's Python cells as one module (magics masked) and what it takes to cut it back."""

    text: str
    spans: Tuple[CellSpan, ...]
    #: the original text of each masked line, by marker number
    magics: Tuple[str, ...]
    #: for each span, whether a newline was added after the cell's text
    added_newline: Tuple[bool, ...]
    #: for each line of ``text``: (line, column) in the notebook file where that line's text starts
    #: inside its JSON string, both 1-based; (0, 0) where unknown. Empty when the layout is unknown.
    file_lines: Tuple[Tuple[int, int], ...] = ()
    #: whether the notebook's JSON escapes non-ASCII characters (columns in the file count escapes)
    ascii_escaped: bool = False

    def in_file(self, line: int, column: int) -> Optional[Tuple[int, int]]:
        """Where a place of the joined module (1-based line, 0-based column) sits in the notebook's
        JSON text, as 1-based (line, column); None when that cannot be said."""
        if not 0 < line <= len(self.file_lines):
            return None
        file_line, start = self.file_lines[line - 1]
        if not file_line:
            return None
        lines = self.text.split("\n")
        prefix = lines[line - 1][:column] if line <= len(lines) else ""
        return file_line, start + _escaped_length(prefix, self.ascii_escaped)

    def locate(self, line: int) -> Tuple[int, int]:
        """(cell, line in that cell) for a 1-based line of the joined module."""
        for span in reversed(self.spans):
            if line >= span.first_line:
                return span.cell, line - span.first_line + 1
        return (self.spans[0].cell if self.spans else 1), line

    def unmask(self, text: str) -> str:
        """``text`` (this module, or a fixed version of it) with the magics put back."""

        def restore(match: re.Match[str]) -> str:
            number = int(match.group("number"))
            return self.magics[number] if number < len(self.magics) else match.group(0)

        return "".join(
            _MAGIC_LINE.sub(restore, line.rstrip("\n")) + ("\n" if line.endswith("\n") else "")
            for line in text.splitlines(keepends=True)
        )


# ----------------------------------------------------------------------------- reading
def load(text: str) -> Dict[str, Any]:
    """The notebook's JSON document; raises NotebookError for anything that is not an nbformat 4 notebook."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise NotebookError(f"is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        raise NotebookError("is not a Jupyter notebook (nbformat 4): no list of cells")
    return document


def is_python(document: Dict[str, Any]) -> bool:
    """Whether the notebook's kernel runs Python (a notebook that does not say is taken as Python)."""
    metadata = _object(document, "metadata", "the notebook's metadata")
    kernel = _object(metadata, "kernelspec", "metadata.kernelspec").get("language")
    language = _object(metadata, "language_info", "metadata.language_info").get("name")
    name = kernel or language
    return name is None or str(name).lower() == "python"


def _object(container: Dict[str, Any], key: str, name: str) -> Dict[str, Any]:
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotebookError(f"has malformed metadata: {name} is a JSON {_json_kind(value)}, not an object")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else type(value).__name__


def cell_text(cell: Dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _cell_magic(text: str) -> Optional[str]:
    first = text.lstrip("\n").split("\n", 1)[0].strip()
    if first.startswith("%%"):
        return first[2:].split(None, 1)[0] if first[2:].strip() else ""
    return None


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def _is_magic_line(line: str) -> bool:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return False
    if stripped[0] in "%!?":
        return True
    if stripped.endswith("?") and "#" not in stripped:
        return True
    return bool(_ASSIGNED_MAGIC.match(line))


def mask(text: str, magics: List[str]) -> str:
    """``text`` with each IPython-only line replaced by a numbered ``pass`` line (appended to ``magics``)."""
    if _parses(text):
        return text
    lines = text.split("\n")
    out = []
    continuing = False
    indent = ""
    for index, line in enumerate(lines):
        first_of_cell_magic = index == 0 and line.strip().startswith("%%")
        if continuing or first_of_cell_magic or _is_magic_line(line):
            if not continuing:  # continuation lines take the indentation of the magic they continue
                indent = line[: len(line) - len(line.lstrip(" \t"))]
            out.append(indent + _MAGIC_MARK.format(len(magics)))
            magics.append(line)
            continuing = line.rstrip().endswith("\\")
        else:
            out.append(line)
    return "\n".join(out)


def to_script(text: str) -> Script:
    """The notebook's Python code cells as one module; raises NotebookError for a bad notebook."""
    document = load(text)
    if not is_python(document):
        return Script("", (), (), ())
    pieces: List[str] = []
    spans: List[CellSpan] = []
    added: List[bool] = []
    magics: List[str] = []
    line = 1
    for position, cell in enumerate(document["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell_text(cell)
        magic = _cell_magic(source)
        if magic is not None and magic not in PYTHON_CELL_MAGICS:
            continue  # another language (%%bash, %%writefile, ...): not Python
        if spans:
            pieces.append(_BOUNDARY.format(position) + "\n")
            line += 1
        masked = mask(source, magics)
        needs_newline = not masked.endswith("\n")
        if needs_newline:
            masked += "\n"
        pieces.append(masked)
        count = masked.count("\n")
        spans.append(CellSpan(position, line, count))
        added.append(needs_newline)
        line += count
    joined = "".join(pieces)
    # Places in the file are needed only for findings, and a module that never names GradientTape has none.
    file_lines, ascii_escaped = (
        _file_lines(text, document, spans, line - 1) if "GradientTape" in joined else ((), False)
    )
    return Script(joined, tuple(spans), tuple(magics), tuple(added), file_lines, ascii_escaped)


def _escaped_length(text: str, ascii_escaped: bool) -> int:
    return len(json.dumps(text, ensure_ascii=ascii_escaped)) - 2


def _file_lines(
    text: str, document: Dict[str, Any], spans: Sequence[CellSpan], total: int
) -> Tuple[Tuple[Tuple[int, int], ...], bool]:
    """Where each line of the joined module starts in the notebook file, found by writing the notebook
    again with a marker in place of each source string: the layout reproduces the file exactly, and
    swapping one JSON string for another moves no line."""
    layout = detect_layout(text, document)
    if layout is None or not spans:
        return (), False
    marked = copy.deepcopy(document)
    pieces: Dict[Tuple[int, int], str] = {}
    for span in spans:
        cell = marked["cells"][span.cell - 1]
        source = cell.get("source", "")
        elements = list(source) if isinstance(source, list) else [str(source)]
        for index, element in enumerate(elements):
            pieces[(span.cell, index)] = element
        marks = [f"\x00tapefix {span.cell} {index}\x00" for index in range(len(elements))]
        cell["source"] = marks if isinstance(source, list) else marks[0]
    starts: Dict[Tuple[int, int], Tuple[int, int]] = {}
    pattern = re.compile(r'"\\u0000tapefix (\d+) (\d+)\\u0000"')
    for number, row in enumerate(dumps(marked, layout).split("\n"), start=1):
        for match in pattern.finditer(row):
            starts[(int(match.group(1)), int(match.group(2)))] = (number, match.start() + 2)
    result = [(0, 0)] * total
    for span in spans:
        # Walk the cell's text, element by element, noting where each of its lines starts.
        line = span.first_line
        index = 0
        at_line_start = True
        while (span.cell, index) in pieces and line < span.first_line + span.line_count:
            element = pieces[(span.cell, index)]
            file_line, column = starts.get((span.cell, index), (0, 0))
            offset = 0
            while True:
                if at_line_start and file_line and line - 1 < total:
                    result[line - 1] = (file_line, column + _escaped_length(element[:offset], layout.ensure_ascii))
                    at_line_start = False
                newline = element.find("\n", offset)
                if newline < 0:
                    break
                offset = newline + 1
                line += 1
                at_line_start = True
                if offset >= len(element):
                    break
            index += 1
    return tuple(result), layout.ensure_ascii


# ----------------------------------------------------------------------------- writing back
def split(script: Script, fixed: str) -> List[str]:
    """The fixed module cut back into cell texts (magics restored), one per span; raises
    NotebookError when a fix moved a cell boundary or a magic (the notebook is then left alone)."""
    lines = fixed.splitlines(keepends=True)
    chunks: List[List[str]] = [[]]
    expected = [span.cell for span in script.spans[1:]]
    seen = []
    for line in lines:
        match = _BOUNDARY_LINE.match(line.rstrip("\r\n"))
        if match is not None:
            seen.append(int(match.group(1)))
            chunks.append([])
        else:
            chunks[-1].append(line)
    if seen != expected:
        raise NotebookError("a fix moved a cell boundary; the notebook is left unchanged")
    numbers = sorted(int(n) for n in re.findall(r"(?m)^[ \t]*pass  # tapefix magic (\d+)$", fixed))
    if numbers != list(range(len(script.magics))):
        raise NotebookError("a fix moved an IPython magic; the notebook is left unchanged")
    texts = []
    for chunk, added in zip(chunks, script.added_newline):
        text = script.unmask("".join(chunk))
        if added and text.endswith("\n"):
            text = text[:-1]
        texts.append(text)
    return texts


def detect_layout(text: str, document: Dict[str, Any]) -> Optional[Layout]:
    """The JSON layout that reproduces ``text`` exactly, or None."""
    match = re.match(r"\{\r?\n( +|\t)", text)
    indents: List[Optional[int]] = [len(match.group(1))] if match and match.group(1) != "\t" else [None]
    newline = text.endswith("\n")
    for indent in indents:
        separator_options = [(",", ": ")] if indent is not None else [(", ", ": "), (",", ":")]
        for separators in separator_options:
            for ensure_ascii in (False, True):
                for sort_keys in (False, True):
                    layout = Layout(indent, ensure_ascii, sort_keys, separators, newline)
                    if dumps(document, layout) == text:
                        return layout
    return None


def dumps(document: Dict[str, Any], layout: Layout) -> str:
    text = json.dumps(
        document,
        indent=layout.indent,
        ensure_ascii=layout.ensure_ascii,
        sort_keys=layout.sort_keys,
        separators=layout.separators,
    )
    return text + "\n" if layout.trailing_newline else text


def from_script(text: str, script: Script, fixed: str) -> str:
    """The notebook ``text`` with its code cells replaced by the fixed module's cells; byte for byte
    the same outside the cells that changed. Raises NotebookError when that cannot be promised."""
    if fixed == script.text:
        return text
    document = load(text)
    layout = detect_layout(text, document)
    if layout is None:
        raise NotebookError("its JSON layout cannot be reproduced exactly; the notebook is left unchanged")
    new_texts = split(script, fixed)
    cells = document["cells"]
    for span, new in zip(script.spans, new_texts):
        cell = cells[span.cell - 1]
        if cell_text(cell) == new:
            continue
        source = cell.get("source")
        cell["source"] = _resplit([str(p) for p in source], new) if isinstance(source, list) else new
    return dumps(document, layout)


def _resplit(parts: List[str], new: str) -> List[str]:
    """``new`` as a ``source`` list cut like ``parts`` (the cell's list before): the strings it keeps
    stay as they were, whole; the changed ones are cut one line per string when the cell's were, or
    kept as one string when the cell held multi-line strings. Jupyter writes a line per string, but a
    notebook written by another tool keeps its own layout."""
    head, start = 0, 0
    while head < len(parts) and parts[head] and new.startswith(parts[head], start):
        start += len(parts[head])
        head += 1
    tail, end = len(parts), len(new)
    while (
        tail > head
        and parts[tail - 1]
        and end - len(parts[tail - 1]) >= start
        and new.endswith(parts[tail - 1], start, end)
    ):
        end -= len(parts[tail - 1])
        tail -= 1
    middle, replaced = new[start:end], parts[head:tail]
    if not middle:
        pieces: List[str] = []
    elif any(len(part.splitlines()) > 1 for part in replaced):
        pieces = [middle]
    else:
        pieces = middle.splitlines(keepends=True)
    return parts[:head] + pieces + parts[tail:]


def cell_sources(text: str) -> Sequence[str]:
    """The text of every cell, in order (for tests and tools)."""
    return [cell_text(cell) for cell in load(text)["cells"]]
