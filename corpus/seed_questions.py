"""The three examples of the "why does tape.gradient return None?" questions, as users write them.

What TensorFlow 2.21 really does with each:
- a Python `if` on a scalar Variable in eager mode has the right gradient (4.0 here): nothing to fix;
- `1/x` at x == 0 is inf forward and -inf in the gradient, not None;
- `np.floor` on a Variable returns a NumPy scalar, and `tape.gradient` on it raises
  `AttributeError: 'numpy.float32' object has no attribute '_id'`.
"""

import numpy as np
import tensorflow as tf

# 1. Control flow: a scalar condition is fine in eager mode.
x = tf.Variable(2.0)
y = tf.Variable(3.0)
with tf.GradientTape() as g:
    if x > 1:
        z = x * y
    else:
        z = x + y
dz_dx = g.gradient(z, x)

# 2. Division at zero.
x0 = tf.Variable(0.0)
with tf.GradientTape() as g:
    r = 1 / x0
dr_dx = g.gradient(r, x0)

# 3. NumPy rounding on a Variable.
x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)
grad = tape.gradient(y, x)

loss = y + r + z
grads = [dz_dx, dr_dx, grad]
