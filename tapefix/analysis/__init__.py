"""Where are we? Name resolution, tape scope and tensor-ness for one module."""

from tapefix.analysis.scope import ModuleAnalysis, Scope, Shape, Value

__all__ = ["ModuleAnalysis", "Scope", "Shape", "Value"]
