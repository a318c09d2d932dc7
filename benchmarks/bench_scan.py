"""How fast ``tapefix --check`` scans a tree, beside a bare libcst parse of the same files.

    python benchmarks/bench_scan.py                      # a generated 83k-line tree, 190 files
    python benchmarks/bench_scan.py --tree PATH          # a real tree (e.g. unpacked tf-models-official)
    python benchmarks/bench_scan.py --files 190 --lines 83000 --tape-share 0.2 --repeat 3 --jobs 2

One run reports, for the same files: a bare ``libcst.parse_module`` of every file (one process, and
``--jobs`` processes), ``tapefix --check --no-cache`` as a user runs it (a fresh interpreter, so start-up
and imports count), the first run that fills the cache, and a cached re-run; each as wall time (median
of ``--repeat``), files/s and lines/s. The cached re-run is also timed inside one process (``api.run``
only), which separates tapefix's own work from the interpreter's start-up and imports.

The generated tree is deterministic (``--seed``): realistic TensorFlow training code (Keras models and
layers, tf.data pipelines, losses, metrics, utilities), of which ``--tape-share`` of the files hold
custom training loops with ``tf.GradientTape`` and a few gradient-breaking idioms. It is written to a
temporary folder (or ``--keep DIR``), never into the repository.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import libcst

# ----------------------------------------------------------------------------- the generated tree
HEADER = '''\
"""{doc}"""

from __future__ import annotations

import os
import numpy as np
import tensorflow as tf
from tensorflow import keras
'''

LAYER = '''

class {Name}Block(keras.layers.Layer):
    """A residual block with {n} filters."""

    def __init__(self, filters={n}, rate={r}, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv_a = keras.layers.Conv2D(filters, 3, padding="same")
        self.conv_b = keras.layers.Conv2D(filters, 3, padding="same")
        self.norm_a = keras.layers.BatchNormalization()
        self.norm_b = keras.layers.BatchNormalization()
        self.dropout = keras.layers.Dropout(rate)

    def call(self, inputs, training=False):
        x = self.conv_a(inputs)
        x = self.norm_a(x, training=training)
        x = tf.nn.relu(x)
        x = self.conv_b(x)
        x = self.norm_b(x, training=training)
        x = self.dropout(x, training=training)
        return tf.nn.relu(x + inputs)

    def get_config(self):
        config = super().get_config()
        config.update({{"filters": self.filters}})
        return config
'''

MODEL = '''

def build_{name}(input_shape=({s}, {s}, 3), classes={c}):
    """A small convolutional classifier."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D({n}, 3, strides=2, padding="same")(inputs)
    for _ in range({k}):
        x = {Name}Block({n})(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense({n}, activation="relu")(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="{name}")
'''

PIPELINE = '''

def make_{name}_dataset(pattern, batch_size={b}, shuffle={sh}):
    """Reads TFRecords, decodes and augments images, and batches them."""
    files = tf.data.Dataset.list_files(pattern, shuffle=shuffle)
    dataset = files.interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE)

    def parse(record):
        features = {{
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        }}
        example = tf.io.parse_single_example(record, features)
        image = tf.io.decode_jpeg(example["image"], channels=3)
        image = tf.image.resize(image, ({s}, {s}))
        image = tf.cast(image, tf.float32) / 255.0
        if shuffle:
            image = tf.image.random_flip_left_right(image)
            image = tf.image.random_brightness(image, {r})
        return image, example["label"]

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle({buf})
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
'''

LOSS = '''

def {name}_loss(labels, logits, smoothing={r}):
    """Cross-entropy with label smoothing and a confidence penalty."""
    classes = tf.shape(logits)[-1]
    one_hot = tf.one_hot(labels, classes)
    one_hot = one_hot * (1.0 - smoothing) + smoothing / tf.cast(classes, tf.float32)
    log_probs = tf.nn.log_softmax(logits)
    loss = -tf.reduce_sum(one_hot * log_probs, axis=-1)
    entropy = -tf.reduce_sum(tf.nn.softmax(logits) * log_probs, axis=-1)
    return tf.reduce_mean(loss - {p} * entropy)
'''

UTIL = '''

def {name}_schedule(step, base={lr}, warmup={w}, total={t}):
    """Linear warm-up, then cosine decay."""
    step = float(step)
    if step < warmup:
        return base * step / warmup
    progress = (step - warmup) / max(1.0, total - warmup)
    return base * 0.5 * (1.0 + np.cos(np.pi * min(progress, 1.0)))


def {name}_summary(history, keys=("loss", "accuracy")):
    """The last value of each metric, formatted for a log line."""
    parts = []
    for key in keys:
        values = history.get(key, [])
        if values:
            parts.append(f"{{key}}={{values[-1]:.4f}}")
    return " ".join(parts)


def {name}_checkpoint_path(root, epoch):
    """Where the checkpoint of an epoch goes."""
    folder = os.path.join(root, "{name}")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"ckpt-{{epoch:04d}}")
'''

FIT = '''

def fit_{name}(train, valid, epochs={e}):
    """Trains with Keras's own loop."""
    model = build_{model}()
    model.compile(optimizer=keras.optimizers.Adam({lr}), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model.fit(train, validation_data=valid, epochs=epochs)
'''

TAPE_STEP = '''

class {Name}Trainer:
    """A custom training loop for {name}."""

    def __init__(self, model, learning_rate={lr}):
        self.model = model
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.loss_metric = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy()

    @tf.function
    def train_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            loss += sum(self.model.losses)
{idiom}
        gradients = tape.gradient(loss, self.model.trainable_variables)
        gradients, _ = tf.clip_by_global_norm(gradients, {clip})
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        self.loss_metric.update_state(loss)
        self.accuracy.update_state(labels, logits)
        return loss

    def evaluate(self, dataset):
        self.accuracy.reset_state()
        for images, labels in dataset:
            logits = self.model(images, training=False)
            self.accuracy.update_state(labels, logits)
        return float(self.accuracy.result())
'''

# Most training steps are fine; some hold an idiom tapefix reports.
IDIOMS = (
    "            loss += {p} * tf.reduce_mean(tf.square(logits))",
    "            loss += {p} * tf.reduce_mean(tf.abs(logits))",
    "            loss += {p} * tf.reduce_mean(np.floor(logits * 4.0) / 4.0)",
    "            ratio = 1 / tf.reduce_sum(logits)\n            loss += {p} * ratio",
    "            if logits > 0:\n                loss = loss * 2.0",
    "            loss += {p} * tf.reduce_mean(tf.square(logits))",
)


def _fill(template: str, rng: random.Random, name: str) -> str:
    values = {
        "name": name,
        "Name": "".join(part.title() for part in name.split("_")),
        "n": rng.choice((32, 64, 96, 128)),
        "r": rng.choice((0.1, 0.2, 0.3)),
        "s": rng.choice((64, 96, 128, 224)),
        "c": rng.choice((10, 100, 1000)),
        "k": rng.randint(2, 5),
        "b": rng.choice((32, 64, 128)),
        "sh": rng.choice((True, False)),
        "buf": rng.choice((1024, 4096, 10000)),
        "p": rng.choice((0.01, 0.05, 0.1)),
        "lr": rng.choice((1e-3, 3e-4, 1e-4)),
        "w": rng.choice((500, 1000, 2000)),
        "t": rng.choice((10000, 50000)),
        "e": rng.randint(5, 50),
        "clip": rng.choice((1.0, 5.0)),
        "model": name,
    }
    values["idiom"] = rng.choice(IDIOMS).format(**values)
    return template.format(**values)


def generate_tree(root: Path, files: int, lines: int, tape_share: float, seed: int) -> None:
    """A deterministic tree of ``files`` modules, about ``lines`` lines in all, a ``tape_share`` of them
    holding a custom training loop with a tape."""
    rng = random.Random(seed)
    per_file = lines / files
    tape_files = set(rng.sample(range(files), round(files * tape_share)))
    packages = ("models", "data", "losses", "training", "utils", "experiments")
    for index in range(files):
        package = root / packages[index % len(packages)]
        package.mkdir(parents=True, exist_ok=True)
        name = f"{packages[index % len(packages)].rstrip('s')}_{index:03d}"
        parts = [HEADER.format(doc=f"{name}: part of a generated TensorFlow project.")]
        count = 0
        # Only experiment scripts use Keras's own fit loop (``compile(loss=...)``), as in real projects.
        templates: Sequence[str] = (LAYER, MODEL, PIPELINE, LOSS, UTIL) + (
            (FIT,) if package.name == "experiments" else ()
        )
        while sum(part.count("\n") for part in parts) < per_file - 15:
            template = rng.choice(templates)
            stem = f"{name}_{count}"
            if template is FIT or template is MODEL:
                parts.append(_fill(LAYER, rng, stem))
            parts.append(_fill(template, rng, stem))
            count += 1
        if index in tape_files:
            parts.append(_fill(TAPE_STEP, rng, f"{name}_{count}"))
        (package / f"{name}.py").write_text("".join(parts), encoding="utf-8")


# ----------------------------------------------------------------------------- measuring
def python_files(root: Path) -> List[Path]:
    return sorted(p for p in root.rglob("*.py") if not any(part.startswith(".") for part in p.parts))


def _parse_file(path: str) -> int:
    source = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    try:
        libcst.parse_module(source)
    except Exception:  # noqa: BLE001 - a file libcst cannot parse still costs its attempt
        pass
    return source.count("\n")


def bare_parse(files: Sequence[Path], jobs: int) -> float:
    start = time.perf_counter()
    if jobs <= 1:
        for path in files:
            _parse_file(str(path))
    else:
        by_size = sorted(files, key=lambda p: -p.stat().st_size)
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_parse_file, [str(p) for p in by_size]))
    return time.perf_counter() - start


def run_cli(tree: Path, *args: str) -> float:
    # tapefix runs as installed: with its bytecode compiled (pip compiles a package when it installs it; a
    # shell that sets PYTHONDONTWRITEBYTECODE would have every run compile tapefix's modules again, about
    # 0.3 s), so the variable is dropped, and ``main`` runs tapefix once before timing it.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tapefix", "--check", "--quiet", "--exit-zero", *args, str(tree)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1, 2):
        raise SystemExit(f"tapefix failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def in_process_cached_run(tree: Path) -> float:
    from tapefix import api
    from tapefix.config import Overrides, Resolver

    resolver = Resolver(Overrides(None, None, None, None), None)
    config = resolver.settings_for(str(tree)).config
    start = time.perf_counter()
    api.run([str(tree)], api.Mode.CHECK, config, resolver=resolver, use_cache=True)
    return time.perf_counter() - start


def median(measure: Callable[[], float], repeat: int) -> float:
    return statistics.median(measure() for _ in range(repeat))


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="measure this tree instead of a generated one")
    parser.add_argument("--files", type=int, default=190)
    parser.add_argument("--lines", type=int, default=83000)
    parser.add_argument("--tape-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="write the generated tree here (and keep it)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(list(argv) or None)

    temporary = None
    if args.tree is not None:
        tree = args.tree
    else:
        if args.keep is not None:
            tree = args.keep
            shutil.rmtree(tree, ignore_errors=True)
        else:
            temporary = tempfile.mkdtemp(prefix="tapefix-bench-")
            tree = Path(temporary) / "project"
        generate_tree(tree, args.files, args.lines, args.tape_share, args.seed)
    cache = Path(tempfile.mkdtemp(prefix="tapefix-bench-cache-"))
    os.environ["TAPEFIX_CACHE_DIR"] = str(cache)
    try:
        files = python_files(tree)
        lines = sum(p.read_bytes().count(b"\n") for p in files)
        tapes = sum(b"GradientTape" in p.read_bytes() for p in files)
        print(
            f"tree: {tree}: {len(files)} files, {lines:,} lines, {tapes} mentioning GradientTape; "
            f"{args.jobs} jobs, median of {args.repeat}"
        )
        run_cli(tree, "--no-cache", "-j", "1")  # compiles tapefix's bytecode, and reads the tree into the page cache
        rows: List[Tuple[str, float]] = [
            ("libcst parse of every file, 1 process", median(lambda: bare_parse(files, 1), args.repeat)),
            (
                f"libcst parse of every file, {args.jobs} processes",
                median(lambda: bare_parse(files, args.jobs), args.repeat),
            ),
            ("tapefix --check --no-cache -j 1", median(lambda: run_cli(tree, "--no-cache", "-j", "1"), args.repeat)),
            (
                f"tapefix --check --no-cache -j {args.jobs}",
                median(lambda: run_cli(tree, "--no-cache", "-j", str(args.jobs)), args.repeat),
            ),
        ]

        def first_run() -> float:
            shutil.rmtree(cache, ignore_errors=True)
            return run_cli(tree, "-j", str(args.jobs))

        rows.append(("tapefix --check, filling the cache", median(first_run, args.repeat)))
        rows.append(("tapefix --check, cached re-run", median(lambda: run_cli(tree), args.repeat)))
        rows.append(
            ("  of which api.run (no start-up, no imports)", median(lambda: in_process_cached_run(tree), args.repeat))
        )
        width = max(len(label) for label, _ in rows)
        print(f"{'':{width}}  {'wall':>8}  {'files/s':>9}  {'lines/s':>10}")
        for label, seconds in rows:
            print(f"{label:{width}}  {seconds:7.2f}s  {len(files) / seconds:9,.0f}  {lines / seconds:10,.0f}")
        base = rows[0][1]
        print(f"tapefix --check --no-cache -j {args.jobs} takes {rows[3][1] / base:.0%} of the 1-process bare parse")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
