"""Every rule tapefix knows, one module per idiom."""

from typing import List, Type

from tapefix.rule import Rule
from tapefix.rules.acos_at_one import AcosAtOne
from tapefix.rules.builtin_on_tensor import BuiltinOnTensor
from tapefix.rules.cond_python_branch import CondPythonBranch
from tapefix.rules.disconnected_target import DisconnectedTarget
from tapefix.rules.division_by_zero import DivisionByZero
from tapefix.rules.function_on_keras_method import FunctionOnKerasMethod
from tapefix.rules.gradient_call_arguments import GradientCallArguments
from tapefix.rules.integer_path import IntegerPath
from tapefix.rules.integer_source import IntegerSource
from tapefix.rules.log_at_zero import LogAtZero
from tapefix.rules.math_on_tensor import MathOnTensor
from tapefix.rules.model_predict import ModelPredictInTape
from tapefix.rules.no_gradient_op import NoGradientOp
from tapefix.rules.numpy_conversion import NumpyConversion
from tapefix.rules.numpy_function import NumpyFunction
from tapefix.rules.numpy_on_tensor import NumpyOnTensor
from tapefix.rules.outside_tape import OutsideTape
from tapefix.rules.python_if_on_tensor import PythonIfOnTensor
from tapefix.rules.python_scalar_conversion import PythonScalarConversion
from tapefix.rules.reduce_std import ReduceStd
from tapefix.rules.rounding_on_tensor import RoundingOnTensor
from tapefix.rules.second_gradient_call import SecondGradientCall
from tapefix.rules.singular_at_zero import SingularAtZero
from tapefix.rules.stateful_in_tape import StatefulInTape
from tapefix.rules.step_in_strategy_scope import StepInStrategyScope
from tapefix.rules.unwatched_source import UnwatchedSource
from tapefix.rules.variable_replaced import VariableReplaced
from tapefix.rules.variable_state_in_tape import VariableStateInTape
from tapefix.rules.wrong_sources import WrongSources

ALL_RULES: List[Type[Rule]] = [
    RoundingOnTensor,
    PythonIfOnTensor,
    DivisionByZero,
    NumpyOnTensor,
    NumpyConversion,
    PythonScalarConversion,
    MathOnTensor,
    BuiltinOnTensor,
    ModelPredictInTape,
    UnwatchedSource,
    IntegerSource,
    SecondGradientCall,
    SingularAtZero,
    IntegerPath,
    VariableStateInTape,
    NumpyFunction,
    OutsideTape,
    LogAtZero,
    WrongSources,
    VariableReplaced,
    ReduceStd,
    AcosAtOne,
    NoGradientOp,
    StatefulInTape,
    DisconnectedTarget,
    GradientCallArguments,
    FunctionOnKerasMethod,
    CondPythonBranch,
    StepInStrategyScope,
]

__all__ = ["ALL_RULES"]
