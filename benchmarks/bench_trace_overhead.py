"""What the trace costs: one Keras training step, untraced and under ``tapefix.trace()``.

    python benchmarks/bench_trace_overhead.py [--steps 60] [--width 256]

Runs the same eager training step (a small MLP, Adam, a batch of 64) untraced and traced, interleaved in
rounds so that a loaded machine slows both alike, and prints the median time per step of each and their
ratio. The goal is a ratio of at most 2. Also checks that the traced steps compute the same losses.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps per measurement round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import tapefix

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Dense(args.width, activation="relu"),
            keras.layers.Dense(args.width, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.normal([64, 32])
    y = tf.random.uniform([64], maxval=10, dtype=tf.int32)

    def step() -> float:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return float(loss)

    for _ in range(5):
        step()
    plain, traced = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        plain.append((time.perf_counter() - start) / args.steps)
        with tapefix.trace(report=io.StringIO()) as result:
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            traced.append((time.perf_counter() - start) / args.steps)
        assert all(call.ok for call in result.calls) and len(result.calls) == args.steps

    # the same program computes the same values traced and untraced
    weights = [w.numpy().copy() for w in model.weights]
    state = [v.numpy().copy() for v in optimizer.variables]
    first = step()
    for w, value in zip(model.weights, weights):
        w.assign(value)
    for v, value in zip(optimizer.variables, state):
        v.assign(value)
    with tapefix.trace(report=io.StringIO()):
        second = step()
    assert first == second, (first, second)

    p, t = statistics.median(plain), statistics.median(traced)
    print(f"untraced step: median {p * 1e3:.2f} ms over {args.rounds} rounds of {args.steps}")
    print(f"traced step:   median {t * 1e3:.2f} ms")
    print(f"ratio traced/untraced: {t / p:.2f} (goal: at most 2.0); same loss traced and untraced: {first == second}")


if __name__ == "__main__":
    main()
