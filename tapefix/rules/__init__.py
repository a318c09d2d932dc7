"""Every rule tapefix knows, one module per idiom."""

from typing import List, Type

from tapefix.rule import Rule
from tapefix.rules.division_by_zero import DivisionByZero
from tapefix.rules.python_if_on_tensor import PythonIfOnTensor
from tapefix.rules.rounding_on_tensor import RoundingOnTensor

ALL_RULES: List[Type[Rule]] = [RoundingOnTensor, PythonIfOnTensor, DivisionByZero]

__all__ = ["ALL_RULES"]
