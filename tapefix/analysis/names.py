"""What a name in a module resolves to: ``tf.floor`` -> ``tensorflow.floor``.

A light replacement for libcst's QualifiedNameProvider, which costs ten times a parse: tapefix only
needs the module's import bindings (research/performance.md).
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

import libcst as cst


def dotted(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a chain of names and attributes, else None."""
    # By class: libcst's node classes are final, and isinstance on them goes through ABCMeta.
    if type(node) is cst.Name:
        return node.value  # type: ignore[attr-defined]
    parts = []
    while type(node) is cst.Attribute:
        parts.append(node.attr.value)  # type: ignore[attr-defined]
        node = node.value  # type: ignore[attr-defined]
    if type(node) is not cst.Name:
        return None
    parts.append(node.value)
    return ".".join(reversed(parts))


def _module_name(node: cst.BaseExpression) -> str:
    return dotted(node) or ""


class ImportMap:
    """Local names bound by ``import`` statements anywhere in the module, and what they stand for."""

    def __init__(self) -> None:
        self.bindings: Dict[str, str] = {}
        #: names bound at module level, which a fix may rely on
        self.module_level: Dict[str, str] = {}

    def add(self, local: str, qualified: str, module_level: bool) -> None:
        self.bindings[local] = qualified
        if module_level:
            self.module_level[local] = qualified

    def add_import(self, node: cst.CSTNode, module_level: bool) -> None:
        if isinstance(node, cst.Import):
            for alias in node.names:
                full = _module_name(alias.name)
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    self.add(alias.asname.name.value, full, module_level)
                else:
                    top = full.split(".")[0]
                    self.add(top, top, module_level)
        elif isinstance(node, cst.ImportFrom):
            if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
                return
            base = _module_name(node.module)
            for alias in node.names:
                name = _module_name(alias.name)
                local = name
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                self.add(local, f"{base}.{name}", module_level)

    def qualify(self, node: cst.BaseExpression) -> Optional[str]:
        """The qualified name of ``node`` if its first part is an imported name."""
        name = dotted(node)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        target = self.bindings.get(head)
        if target is None:
            return None
        # ``tf.compat.v2.summary`` is ``tf.summary``, however it is spelled.
        return _canonical(f"{target}.{rest}" if rest else target)

    def alias_for(self, qualified: str) -> Optional[str]:
        """A module-level local name bound to ``qualified`` (``tf`` for ``tensorflow``)."""
        for local, target in self.module_level.items():
            if _canonical(target) == qualified:
                return local
        return None


_CANONICAL = {
    # tf.keras and keras are one API for tapefix's purposes
    "tensorflow.compat.v2": "tensorflow",
}


def _canonical(name: str) -> str:
    for prefix, replacement in _CANONICAL.items():
        if name == prefix or name.startswith(prefix + "."):
            return replacement + name[len(prefix) :]
    return name


def is_under(qualified: Optional[str], prefixes: Iterable[str]) -> bool:
    if qualified is None:
        return False
    return any(qualified == p or qualified.startswith(p + ".") for p in prefixes)
