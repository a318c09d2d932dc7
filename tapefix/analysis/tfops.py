"""What tapefix knows of TensorFlow itself, in one place: the tape's methods, the calls that build a
plain tensor, the integer dtypes. Rules and the analysis ask here; none keeps its own list."""

from __future__ import annotations

#: a tape's methods that compute gradients of a target with respect to sources
GRADIENT_METHODS = ("gradient", "jacobian", "batch_jacobian")
#: a tape's methods that mark their arguments as sources or targets
MARKING_METHODS = ("watch", *GRADIENT_METHODS)
# TensorFlow calls that build a plain tensor: the tape records ops on it only once it is watched.
TENSOR_CONSTRUCTORS = frozenset(
    {
        "constant",
        "convert_to_tensor",
        "zeros",
        "ones",
        "zeros_like",
        "ones_like",
        "fill",
        "eye",
        "linspace",
        "random.normal",
        "random.uniform",
        "random.truncated_normal",
        "cast",
        "identity",
        "stack",
        "concat",
        "reshape",
    }
)
#: dtypes with no gradient: TensorFlow returns None for a source of one of them
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
