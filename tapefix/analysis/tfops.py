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
#: ``tf.cast`` under both its names: its result has the dtype it is given, whatever its argument's
CAST = frozenset({"cast", "dtypes.cast"})
#: calls that cut the gradient by design, not by an integer result: a stop, a shape fact, a shape-only tensor, a one-hot
GRADIENT_CUTS = frozenset({"stop_gradient", *SHAPE_OPS, "zeros_like", "ones_like", "one_hot"})
#: ``tf.where`` (and its v2 name): selects elementwise, but differentiates both branches in every lane
WHERE = frozenset({"where", "where_v2"})
#: calls that bound a value from above or below when wrapped around it
BOUNDING = frozenset({"clip_by_value", "minimum", "maximum", "math.minimum", "math.maximum"})
#: the sum reduction (``tape.gradient`` sums a non-scalar target itself, so it adds nothing there)
REDUCE_SUM = frozenset({"reduce_sum", "math.reduce_sum"})
#: Python's two-argument builtins -> the TensorFlow op with the same forward value elementwise
BUILTIN_MIN_MAX = {"max": "maximum", "min": "minimum"}

# Ops at whose edge a value or a gradient becomes 0, inf or NaN (TF 2.21).
#: the natural logarithm: -inf at 0, gradient inf
LOG = frozenset({"log", "math.log"})
#: ``log(1 + x)``: -inf at -1, gradient inf
LOG1P = frozenset({"log1p", "math.log1p"})
#: the exponential: overflows to inf above about 88.7 in float32, so ``log(1 + exp(x))`` is inf there
EXP = frozenset({"exp", "math.exp"})
#: the softmax: a probability underflows to exactly 0 long before the logits are extreme
SOFTMAX = frozenset({"nn.softmax", "math.softmax", "keras.activations.softmax"})
#: the logistic sigmoid: underflows to exactly 0 for a very negative input
SIGMOID = frozenset({"sigmoid", "math.sigmoid", "nn.sigmoid", "keras.activations.sigmoid"})
#: the keywords each softmax spelling shares with ``tf.nn.log_softmax(logits, axis)``
SOFTMAX_KEYWORDS = {"nn.softmax": frozenset({"logits", "axis"}), "math.softmax": frozenset({"logits", "axis"})}
#: the square root: gradient inf at 0
SQRT = frozenset({"sqrt", "math.sqrt"})
#: the power ``x ** y``: for an exponent below 1, gradient inf (or NaN) at x = 0
POW = frozenset({"pow", "math.pow"})
#: the vector norm: the square root of a sum of squares, gradient NaN at the zero vector
NORM = frozenset({"norm", "linalg.norm"})
#: the inverse cosine and sine: gradient infinite at ±1
ACOS_ASIN = frozenset({"acos", "math.acos", "asin", "math.asin"})
#: the standard deviation: the square root of the variance, gradient NaN where the values are all equal
REDUCE_STD = frozenset({"math.reduce_std"})
#: ops whose gradient is inf or NaN in some lanes a tf.where around them may leave unselected
SINGULAR_OPS = frozenset(
    {
        "math.log",
        "log",
        "sqrt",
        "math.sqrt",
        "math.rsqrt",
        "rsqrt",
        "math.reciprocal",
        "reciprocal",
        "math.log1p",
        "math.acos",
        "acos",
        "math.asin",
        "asin",
        "pow",
        "math.pow",
        "math.divide",
        "divide",
        "experimental.numpy.log",
        "experimental.numpy.sqrt",
    }
)
#: ops whose gradient is inf at a point a guarding tf.where leaves out -> an in-domain argument for that point
TRAP_SAFE_VALUE = {
    "sqrt": "1.0",
    "math.sqrt": "1.0",
    "rsqrt": "1.0",
    "math.rsqrt": "1.0",
    "reciprocal": "1.0",
    "math.reciprocal": "1.0",
    "log": "1.0",
    "math.log": "1.0",
    "log1p": "1.0",
    "math.log1p": "1.0",
    "acos": "0.0",
    "math.acos": "0.0",
    "asin": "0.0",
    "math.asin": "0.0",
    "pow": "1.0",
    "math.pow": "1.0",
}
#: of those, the ones whose NaN eager and tf.function mask but XLA does not (research/idioms.md, E4 table)
XLA_ONLY_TRAP = frozenset({"sqrt", "math.sqrt", "rsqrt", "math.rsqrt", "reciprocal", "math.reciprocal"})

# Ops that cut the gradient or fail in ``tape.gradient`` (TF 2.21).
#: ops with no registered gradient (tape.gradient raises LookupError) -> (differentiated argument, op name)
NO_REGISTERED_GRADIENT = {
    "unique": ("x", "Unique"),
    "unique_with_counts": ("x", "UniqueWithCounts"),
    "image.adjust_contrast": ("images", "AdjustContrastv2"),
    "image.random_contrast": ("image", "AdjustContrastv2"),
    "image.adjust_saturation": ("image", "AdjustSaturation"),
    "image.random_saturation": ("image", "AdjustSaturation"),
    "image.adjust_hue": ("image", "AdjustHue"),
    "image.random_hue": ("image", "AdjustHue"),
    "image.draw_bounding_boxes": ("images", "DrawBoundingBoxesV2"),
    "image.extract_glimpse": ("input", "ExtractGlimpseV2"),
    "linalg.lu": ("input", "Lu"),
}
#: random sampling whose result carries no gradient back to its input (None) -> that input's keyword
SAMPLING = {
    "random.categorical": "logits",
    "random.shuffle": "value",
}
#: image resizing: ``method="area"`` runs ResizeArea, which has no registered gradient
RESIZE = frozenset({"image.resize"})
#: ``tf.data`` datasets made from tensors: they and their iterators are stateful and stop every gradient
DATASET_FROM_TENSORS = frozenset({"data.Dataset.from_tensors", "data.Dataset.from_tensor_slices"})
#: a variable's methods that assign to it, which a tape does not record
VARIABLE_ASSIGN_METHODS = ("assign", "assign_add", "assign_sub")
#: strategies whose variables are mirrored: a step outside ``strategy.run`` fails in ``tape.gradient``
MIRRORED_STRATEGIES = ("distribute.MirroredStrategy",)

# Leaving TensorFlow for NumPy: the tape records nothing past these.
#: NumPy functions (name under ``numpy.``) that copy a tensor into a NumPy array
NUMPY_CONVERTERS = frozenset({"array", "asarray", "asanyarray", "copy"})
#: NumPy scalar types (name under ``numpy.``) whose call makes a NumPy scalar of a tensor
NUMPY_SCALARS = frozenset({"float32", "float64", "float16", "double", "single"})
#: Keras functions (how their name under ``keras.`` ends) that return a tensor's value as NumPy
KERAS_CONVERTERS = ("backend.eval", "ops.convert_to_numpy", "backend.get_value")
#: methods, called without arguments, that return a tensor's (or an array's) value as NumPy or Python
NUMPY_METHODS = ("numpy", "item", "tolist")
#: TensorFlow calls whose result carries no gradient back to their inputs (TF 2.21: ``None``), as a
#: connection walk meets them: a stop, a sort's indices, a type test, an index, a comparison, a shape, a
#: count (``count_nonzero`` returns int64)
CUT_OPS = frozenset(
    {"stop_gradient", "argsort", "sort_indices", "is_tensor", "count_nonzero", "math.count_nonzero"}
    | ARGMAX
    | COMPARISONS
    | SHAPE_OPS
)

# What the sign analysis (``expressions.sign``) knows of an op's result: can it be zero, or negative?
#: TensorFlow and NumPy functions (how their name under ``tensorflow.`` or ``numpy.`` begins) whose result
#: differs from call to call, so a call of one is never duplicated
IMPURE_CALLS = ("random", "Variable", "py_function", "numpy_function", "print", "summary", "io", "data")
#: ops whose result is never zero, or that the user wrote as a guard (a maximum, a clip, a where)
NONZERO_TF = frozenset(
    {
        "maximum", "math.maximum", "clip_by_value", "exp", "math.exp", "nn.softplus", "math.softplus",
        "ones", "ones_like", "where", "where_v2", "sigmoid", "math.sigmoid", "nn.sigmoid",
        "math.divide_no_nan", "keras.backend.epsilon", "shape", "size",
    }
)  # fmt: skip
#: of the ops in NONZERO_TF, those whose result is also never negative
POSITIVE_TF = frozenset(
    {
        "exp", "math.exp", "nn.softplus", "math.softplus", "ones", "ones_like", "sigmoid", "math.sigmoid",
        "nn.sigmoid", "keras.backend.epsilon", "shape", "size",
    }
)  # fmt: skip
#: elementwise ops that keep zero at zero and away from zero elsewhere, and make the result >= 0
MAGNITUDE = frozenset({"square", "math.square", "abs", "math.abs", "sqrt", "math.sqrt"})
#: ops that keep each element's sign and zeros: a copy, a reshape, a float cast
SAME_VALUES = frozenset(
    {
        "identity", "reshape", "squeeze", "expand_dims", "transpose", "cast", "convert_to_tensor", "constant",
        "broadcast_to", "tile", "stop_gradient",
    }
)  # fmt: skip
#: the sum and the mean reductions: >= 0 (> 0) of values all >= 0 (> 0), 1 of a probability vector
REDUCE_SUM_OR_MEAN = frozenset({*REDUCE_SUM, "reduce_mean", "math.reduce_mean"})
#: the max and the min reductions: an element of their input, so they keep its sign
REDUCE_MAX_OR_MIN = frozenset({"reduce_max", "math.reduce_max", "reduce_min", "math.reduce_min"})
#: TensorFlow's continuous random draws: each element is exactly 0 with a tiny but real probability
#: (TF 2.21 CPU: 7 zeros in 1e8 tf.random.normal draws, 11 in tf.random.uniform)
RANDOM_DRAWS = frozenset(
    {
        "random.normal", "random.truncated_normal", "random.uniform", "random.stateless_normal",
        "random.stateless_truncated_normal", "random.stateless_uniform", "random.gamma",
    }
)  # fmt: skip
#: NumPy's continuous random draws (name under ``numpy.``): each element is exactly 0 with a tiny probability
NUMPY_RANDOM_DRAWS = frozenset(
    {"random.normal", "random.randn", "random.standard_normal", "random.rand", "random.uniform", "random.random"}
)
#: a variable's methods that change it in place: the assigns and the sparse scatters
VARIABLE_UPDATE_METHODS = (*VARIABLE_ASSIGN_METHODS, "scatter_update", "scatter_add", "scatter_sub")
#: an optimizer's methods that update the variables given to them
OPTIMIZER_UPDATE_METHODS = ("apply_gradients", "minimize", "apply")

# Where a value goes (``uses.py``): into computation, into display code, into foreign code, or nowhere.
#: TensorFlow functions (how their name under ``tensorflow.`` begins) that print, log, summarize, write or
#: format a value
DISPLAY_CALLS = ("print", "summary", "debugging", "io", "strings.format")
#: TensorFlow functions (how their name under ``tensorflow.`` begins) that run Python code on a value
FOREIGN_CALLS = ("numpy_function", "py_function", "compat.v1.py_func")
#: TensorFlow functions (how their name under ``tensorflow.``, past any ``compat.v1.``/``compat.v2.``,
#: begins) that only show a value: a value inside one feeds no computation
SHOW_ONLY_CALLS = ("print", "summary.", "debugging.")
#: ... except these, which return the value they check: the gradient flows through
#: ``tf.debugging.check_numerics`` on TF 2.21 (while ``assert_all_finite`` returns a tensor without one)
PASS_THROUGH_CALLS = ("debugging.check_numerics",)
#: NumPy functions (how their name under ``numpy.`` begins) that write a value out or test it
NUMPY_FOREIGN = ("save", "savez", "savetxt", "savez_compressed", "testing")
#: NumPy functions (name under ``numpy.``) whose result carries nothing a gradient could follow
NUMPY_NO_GRADIENT = frozenset(
    {
        "shape", "ndim", "size", "argmax", "argmin", "argsort", "isnan", "isinf", "isfinite", "any", "all",
        "allclose", "array_equal", "isclose", "count_nonzero", "nonzero",
    }
)  # fmt: skip
#: NumPy functions whose TensorFlow counterpart (TF104's rewrite) gives bit-identical values
EXACT_NUMPY = frozenset(
    {
        "sqrt", "abs", "absolute", "fabs", "square", "negative", "maximum", "minimum", "add", "subtract",
        "multiply", "divide", "true_divide", "max", "amax", "min", "amin", "clip", "where", "concatenate",
        "reshape", "transpose",
    }
)  # fmt: skip
#: TensorFlow calls through which no gradient flows back to their arguments, as ``feeds_gradient`` walks:
#: a step function (rounding, sign), an index or a comparison made from the value, its shape, a stop
NO_GRADIENT_THROUGH = frozenset(
    {
        "stop_gradient", "round", "math.round", "floor", "math.floor", "math.ceil", "math.rint", "sign",
        "math.sign", "argmax", "argmin", "math.argmax", "math.argmin", "argsort", "sort_indices", "one_hot",
        "shape", "size", "rank", "equal", "not_equal", "greater", "less", "greater_equal", "less_equal",
        "math.equal", "math.not_equal", "math.greater", "math.less", "math.greater_equal", "math.less_equal",
        "math.is_nan", "math.is_inf", "math.is_finite", "is_nan", "is_inf", "is_finite", "logical_and",
        "logical_or", "logical_not", "random.categorical", "histogram_fixed_width", "math.count_nonzero",
        "math.bincount", "unique",
    }
)  # fmt: skip
#: arguments that are positions or masks, not values, so no gradient flows into them -> (position, keyword)
SELECTOR_ARGUMENTS = {
    "where": (0, "condition"),
    "where_v2": (0, "condition"),
    "gather": (1, "indices"),
    "gather_nd": (1, "indices"),
    "boolean_mask": (1, "mask"),
    "tensor_scatter_nd_update": (1, "indices"),
}
