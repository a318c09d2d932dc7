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
# Floor division: ``floor(x / y)`` forward; TF 2.21 returns no gradient for either operand through
# tf.math.floordiv (tf.compat.v1.floordiv; TF 2 has no tf.floordiv), tf.experimental.numpy.floor_divide,
# keras.ops.floor_divide, nor through the ``//`` operator on float tensors. Their remainders
# (tf.math.floormod, tf.math.mod, ``%``) do have a gradient (1 for x, -floor(x / y) for y): not here.
FLOOR_DIVISION = frozenset(
    {
        "tensorflow.math.floordiv",
        "tensorflow.compat.v1.floordiv",
        "tensorflow.experimental.numpy.floor_divide",
        *(f"{keras}.ops.floor_divide" for keras in ("keras", "tensorflow.keras")),
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

# Arguments TensorFlow takes only as integers: a float tensor there raises (TF 2.21, measured for each:
# InvalidArgumentError "Value for attr 'Tindices' of float is not in the list of allowed values" and the
# like, TypeError in a tf.function). By the name under ``tensorflow.``: the (position, keyword) of each.
# Not here: ``tf.range`` (a float limit gives a float range) and ``tf.zeros_like(x, dtype=...)``.
_SCATTER_ND = ("update", "add", "sub", "max", "min")
INTEGER_ARGUMENTS = {
    "gather": ((1, "indices"), (3, "axis")),
    "gather_nd": ((1, "indices"),),
    "one_hot": ((0, "indices"), (1, "depth")),
    "nn.embedding_lookup": ((1, "ids"),),
    "scatter_nd": ((0, "indices"), (2, "shape")),
    **{f"tensor_scatter_nd_{name}": ((1, "indices"),) for name in _SCATTER_ND},
    "math.unsorted_segment_sum": ((1, "segment_ids"), (2, "num_segments")),
    "nn.sparse_softmax_cross_entropy_with_logits": ((0, "labels"),),
    "zeros": ((0, "shape"),),
    "ones": ((0, "shape"),),
    "fill": ((0, "dims"),),
    "reshape": ((1, "shape"),),
    "tile": ((1, "multiples"),),
    "broadcast_to": ((1, "shape"),),
    "slice": ((1, "begin"), (2, "size")),
    "roll": ((1, "shift"), (2, "axis")),
    "random.normal": ((0, "shape"),),
    "random.uniform": ((0, "shape"),),
}
#: Python builtins that take only an integer (``range`` of a float tensor raises)
INTEGER_BUILTINS = frozenset({"range"})
#: calls whose result has the dtype of their first argument (an index reshaped is still an index)
SAME_DTYPE = frozenset({"identity", "reshape", "expand_dims", "squeeze", "transpose", "stack", "concat"})

#: ops (last name under ``tensorflow.``) whose result is one tensor, never a list of them (``tf.split``,
#: ``tf.unstack``, ``tf.nn.moments`` return several): ``y[0]`` of their result slices a tensor
SINGLE_TENSOR_OPS = frozenset(
    "matmul reduce_sum reduce_mean reduce_max reduce_min square sqrt exp log tanh sigmoid add multiply "
    "subtract divide stack concat reshape transpose einsum abs gather where".split()
)
