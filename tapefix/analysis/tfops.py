"""What tapefix knows of TensorFlow itself, in one place: the tape's methods, the calls that build a
plain tensor, the integer dtypes. Rules and the analysis ask here; none keeps its own list."""

from __future__ import annotations

#: a tape's methods that compute gradients of a target with respect to sources
GRADIENT_METHODS = ("gradient", "jacobian", "batch_jacobian")
#: the keywords each of a tape's gradient methods takes (any other raises TypeError)
GRADIENT_KEYWORDS = {
    "gradient": ("target", "sources", "output_gradients", "unconnected_gradients"),
    "jacobian": ("target", "sources", "unconnected_gradients", "parallel_iterations", "experimental_use_pfor"),
    "batch_jacobian": ("target", "source", "unconnected_gradients", "parallel_iterations", "experimental_use_pfor"),
}
#: calls that build a tf.SparseTensor, which no gradient call takes as a source or target
SPARSE_CONSTRUCTORS = frozenset({"SparseTensor", "sparse.SparseTensor", "sparse.from_dense", "sparse.reorder"})
#: Keras layers that hold no weights: a gradient path through one reaches no variable of its own
WEIGHTLESS_LAYERS = frozenset(
    {
        "MaxPool1D",
        "MaxPool2D",
        "MaxPool3D",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "AvgPool1D",
        "AvgPool2D",
        "AvgPool3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "Flatten",
        "Reshape",
        "Dropout",
        "Activation",
        "ReLU",
        "Softmax",
        "LeakyReLU",
        "Permute",
        "UpSampling1D",
        "UpSampling2D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "Cropping1D",
        "Cropping2D",
    }
)
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

# Rounding: a step function forward; TF 2.21 returns no gradient through any of these (checked for
# tf.floor, tf.math.ceil, tf.round, tf.math.rint, keras.ops.floor/ceil/round/trunc and
# tf.keras.backend.round). By qualified name, as ``ModuleAnalysis.qualify`` gives it.
_KERAS_ROUNDING = ("floor", "ceil", "round", "trunc")
ROUNDING = frozenset(
    {
        "tensorflow.floor",
        "tensorflow.math.floor",
        "tensorflow.math.ceil",
        "tensorflow.round",
        "tensorflow.math.round",
        "tensorflow.math.rint",
        "tensorflow.experimental.numpy.floor",
        "tensorflow.experimental.numpy.ceil",
        "tensorflow.experimental.numpy.round",
        "tensorflow.experimental.numpy.around",
        "tensorflow.experimental.numpy.rint",
        "tensorflow.keras.backend.round",
        *(f"{keras}.ops.{name}" for keras in ("keras", "tensorflow.keras") for name in _KERAS_ROUNDING),
    }
)
#: NumPy's rounding functions -> the TensorFlow op with the same forward values (both round half to even)
NUMPY_ROUNDING = {"floor": "floor", "ceil": "math.ceil", "round": "round", "around": "round", "rint": "math.rint"}

# Ops whose result carries no gradient back to their inputs (TF 2.21 returns None through them).
#: index-valued reductions
ARGMAX = frozenset({"argmax", "argmin", "math.argmax", "math.argmin"})
#: comparisons and logic: boolean results
COMPARISONS = frozenset(
    {
        *(f"{prefix}{name}" for prefix in ("", "math.") for name in ("equal", "not_equal", "greater", "less")),
        *(f"{prefix}{name}" for prefix in ("", "math.") for name in ("greater_equal", "less_equal")),
        *(f"{prefix}logical_{name}" for prefix in ("", "math.") for name in ("and", "or", "not")),
    }
)
#: a tensor's static facts: its shape, size and rank
SHAPE_OPS = frozenset({"shape", "size", "rank"})
