"""The verifier's TensorFlow process: the only module of tapefix that imports TensorFlow.

Run as a script by ``tapefix.verify.runner`` (never imported by tapefix itself). It reads one JSON
probe per line on stdin and writes one JSON verdict per line on stdout. Each probe holds two small
modules (the unit before and after a fix) built by ``tapefix.verify.probes``; the child runs both on
the same synthesised inputs, in eager mode, under ``tf.function`` and, when the fix selects with
``tf.where``, under XLA, and judges the pair:

* *before* must be broken on some input: the gradient raised, was None, was non-finite, or was zero
  on every input (a silent zero, as ``tf.sign`` gives);
* *after* must give a finite gradient for every input, in every mode;
* the forward values must match as the rule's ``Forward`` contract says.

Anything the snippets print goes to stderr: stdout carries the protocol only.
"""

from __future__ import annotations

import importlib.util
import json
import linecache
import os
import resource
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

# The snippets never need more than this; a runaway one fails alone instead of taking the machine.
MEMORY_LIMIT = int(os.environ.get("TAPEFIX_VERIFY_MEMORY", str(8 << 30)))
ULPS = 4
SCALARS = (0.0, -1.0, 2.5)
VECTOR = (0.0, -1.0, 0.5, 1.5, 2.5, -2.5, -0.5, 1000000.5)
MATRIX_POINTS = (0.0, 0.5, -0.5, 1.5, -2.5, 3.5)
MATRIX_SHAPE = (3, 4)
SEED = 1234

tf: Any = None
np: Any = None


def _limit_memory() -> None:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):
        pass


# ---------------------------------------------------------------------------- inputs
def cases(count: int, shapes: Sequence[Any] = ()) -> List[Tuple[str, List[Any]]]:
    """(label, one float32 array per input): scalars at the interesting points, one vector holding
    them all, one seeded matrix with a zero row and column, an all-zero vector and, when the module
    declares every input's shape, inputs of those shapes. Each input sees a different arrangement."""
    rng = np.random.default_rng(SEED)
    out: List[Tuple[str, List[Any]]] = []
    for index in range(len(SCALARS)):
        out.append((f"scalar-{index}", [np.float32(SCALARS[(index + 2 * i) % len(SCALARS)]) for i in range(count)]))
    vector = np.array(VECTOR, dtype=np.float32)
    out.append(("vector", [vector if i == 0 else rng.permutation(vector) for i in range(count)]))
    size = MATRIX_SHAPE[0] * MATRIX_SHAPE[1]
    matrices = []
    for _ in range(count):
        values = np.concatenate([MATRIX_POINTS, np.round(rng.normal(0.0, 3.0, size - len(MATRIX_POINTS)), 3)])
        matrix = rng.permutation(values).astype(np.float32).reshape(MATRIX_SHAPE)
        matrix[1, :] = 0.0
        matrix[:, 2] = 0.0
        matrices.append(matrix)
    out.append(("matrix", matrices))
    # Norms and reductions are singular where a whole row, column or vector is zero.
    out.append(("zeros", [np.zeros(len(VECTOR), dtype=np.float32) for _ in range(count)]))
    if shapes and len(shapes) == count and any(s is not None for s in shapes):
        # An input whose shape the module does not declare takes a scalar, which broadcasts.
        declared = []
        for index, shape in enumerate(s if s is not None else () for s in shapes):
            size = int(np.prod(shape)) if shape else 1
            values = np.resize(np.roll(np.array(VECTOR, dtype=np.float32), index), size)
            declared.append(values.reshape(shape) if shape else np.float32(values[0]))
        out.append(("declared", declared))
        if all(s is not None for s in shapes):
            out.append(("declared-zeros", [np.zeros_like(np.asarray(v)) for v in declared]))
    return out


def with_examples(names: Sequence[str], inputs: List[Tuple[str, List[Any]]], probe: Dict[str, Any]) -> List[str]:
    """Put the user's own inputs (``--verify-with``) first among ``inputs``, for the names they give (the
    other names take a harmless scalar); return the names they gave."""
    examples: Dict[str, Any] = probe.get("examples") or {}
    given = [name for name in names if name in examples]
    if given:
        values = [
            np.array(examples[name]["values"], dtype=np.float32).reshape(examples[name]["shape"])
            if name in examples
            else np.float32(SCALARS[-1])
            for name in names
        ]
        inputs.insert(0, ("your inputs", values))
    return given


def _mention(verdict: Dict[str, Any], given: Sequence[str]) -> Dict[str, Any]:
    if given and verdict.get("status") != "unverified":
        verdict["reason"] = f"{verdict.get('reason', '')}; on your inputs for " + ", ".join(f"`{n}`" for n in given)
    return verdict


# ---------------------------------------------------------------------------- running one version
class Run:
    """What one version of the unit did on one input, in one mode."""

    def __init__(self) -> None:
        self.error = ""  #: "ValueError: ..." when something raised
        self.stage = ""  #: "forward", "gradient" or "" when unknown (graph modes)
        self.outs: Optional[List[Any]] = None
        self.grads: Optional[List[Any]] = None


def load(source: str, name: str, entry: str = "__tapefix_unit") -> Callable[..., Any]:
    # Registered in linecache so autograph can read the snippet's source, as it would a file's.
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    namespace: Dict[str, Any] = {"__name__": "__tapefix_probe__"}
    exec(compile(source, name, "exec"), namespace)
    return namespace[entry]  # type: ignore[no-any-return]


def _is_target(value: Any) -> bool:
    """Whether an output is a gradient target: tensors, and NumPy values (on which the user's own
    ``tape.gradient`` would raise, as the probe then does); not Python numbers or other objects."""
    return bool(tf.is_tensor(value)) or isinstance(value, (np.ndarray, np.generic))


def _graph_step(unit: Callable[..., Any]) -> Callable[..., Any]:
    def step(*xs: Any) -> Any:
        with tf.GradientTape() as tape:
            for x in xs:
                tape.watch(x)
            outs = unit(*xs)
        targets = [o for o in outs if _is_target(o)]
        grads = tape.gradient(targets, list(xs)) if targets else [None] * len(xs)
        return [o if _is_target(o) or isinstance(o, (bool, int, float)) else None for o in outs], grads

    return step


def make_runner(
    unit: Callable[..., Any], mode: str, count: int, autograph: bool = True
) -> Callable[[Sequence[Any]], Run]:
    if mode == "eager":

        def eager(values: Sequence[Any]) -> Run:
            run = Run()
            xs = [tf.constant(v) for v in values]
            run.stage = "forward"
            try:
                with tf.GradientTape() as tape:
                    for x in xs:
                        tape.watch(x)
                    outs = unit(*xs)
                run.outs = [_array(o) for o in outs]
                run.stage = "gradient"
                targets = [o for o in outs if _is_target(o)]
                grads = tape.gradient(targets, xs) if targets else [None] * len(xs)
                run.grads = [None if g is None else g.numpy() for g in grads]
                run.stage = ""
            except Exception as error:  # noqa: BLE001 - any exception is a finding about the snippet
                run.error = _describe(error)
            return run

        return eager
    if mode == "function":
        signature = [tf.TensorSpec(None, tf.float32)] * count
        compiled = tf.function(_graph_step(unit), input_signature=signature, autograph=autograph)
    else:
        compiled = tf.function(_graph_step(unit), jit_compile=True, autograph=autograph)

    def graph(values: Sequence[Any]) -> Run:
        run = Run()
        try:
            outs, grads = compiled(*[tf.constant(v) for v in values])
            run.outs = [_array(o) for o in outs]
            run.grads = [None if g is None else g.numpy() for g in grads]
        except Exception as error:  # noqa: BLE001
            run.error = _describe(error)
        return run

    return graph


def _array(value: Any) -> Any:
    """A numeric array for an output, or None for anything that is not a number (it is not compared)."""
    if tf.is_tensor(value):
        value = value.numpy()
    if not isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        return None
    array = np.asarray(value)
    return array if array.dtype.kind in "biuf" else None


def _describe(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if message == "in user code:" and len(lines) > 1:
        # Autograph wraps the real error; its last line says what it was.
        message = lines[-1]
    if len(message) > 120:
        message = message[:117] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# ---------------------------------------------------------------------------- judging
def _where(values: Sequence[Any], names: Sequence[str], shape: Tuple[int, ...], index: Tuple[int, ...]) -> str:
    """``x=0.5`` for the inputs at one lane of an output."""
    parts = []
    for name, value in zip(names, values):
        array = np.asarray(value)
        try:
            lane = np.broadcast_to(array, shape)[index] if shape else array
        except ValueError:
            lane = array
        if np.asarray(lane).size != 1:
            # A reduced output: no single input lane to name.
            return "on the " + " and ".join(f"{np.asarray(v).shape} input {n}" for n, v in zip(names, values))
        parts.append(f"{name}={_number(lane)}")
    return "at " + ", ".join(parts)


def _number(value: Any) -> str:
    array = np.asarray(value)
    if array.size == 1:
        return str(array.reshape(())[()])
    return str(np.array2string(array, threshold=6))


def gradient_problem(
    run: Run, names: Sequence[str], values: Sequence[Any], ignore: Any = None, none_ok: Sequence[int] = ()
) -> str:
    """'' when every gradient exists and is finite, else what is wrong. ``ignore`` masks lanes
    outside the code's domain; ``none_ok`` are inputs whose None gradient the other version shares
    (an input read only by a condition has none, rightly), unless every gradient is None."""
    if run.error:
        kind = run.error.split(":")[0]
        if run.stage == "forward":
            return f"raised {kind}"
        return f"gradient raised {kind}"
    assert run.grads is not None
    missing = [i for i, g in enumerate(run.grads) if g is None]
    if missing and (len(missing) == len(run.grads) or any(i not in none_ok for i in missing)):
        return "gradient was None"
    for grad in run.grads:
        if grad is None:
            continue
        bad = ~np.isfinite(grad)
        if ignore is not None and bad.shape == ignore.shape:
            bad = bad & ~ignore
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0]) if grad.ndim else ()
            which = "NaN" if np.isnan(grad[index] if grad.ndim else grad) else "inf"
            return f"gradient was {which} {_where(values, names, grad.shape, index)}"
    return ""


def _none(run: Run) -> List[int]:
    """The inputs for which ``run`` had no gradient."""
    return [i for i, g in enumerate(run.grads or ()) if g is None] if not run.error else []


def all_zero(run: Run) -> bool:
    return run.grads is not None and all(g is not None and not np.any(g) for g in run.grads)


def compare_forward(
    forward: str,
    before: Sequence[Any],
    after: Sequence[Any],
    names: Sequence[str],
    values: Sequence[Any],
    compiled: bool = False,
) -> Tuple[str, int, int]:
    """(difference or '', lanes compared, singular lanes) for one input.

    ``compiled``: ``after`` ran under XLA, which fuses and reorders float arithmetic, so even an exact
    rewrite may move the last bits against the eager original; values are then compared within ULPS.
    """
    lanes = sum(int(np.asarray(v).size) for v in values[:1])
    singular = 0
    for old, new in zip(before, after):
        if old is None or new is None:
            continue
        if old.shape != new.shape:
            return f"forward shape {new.shape} vs {old.shape}", lanes, singular
        a = new.astype(np.float64)
        b = old.astype(np.float64)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if compiled:
            same = same | _within_ulps(old, a, b)
        if forward == "singular":
            # At the singular points the original is inf/NaN; the fix must be finite there.
            point = ~np.isfinite(b)
            ok = same | (point & np.isfinite(a))
            singular += int(np.count_nonzero(point & ~same))
        elif forward == "ulp":
            ok = same | _within_ulps(old, a, b)
        else:
            ok = same
        if not ok.all():
            index = tuple(int(i) for i in np.argwhere(~ok)[0]) if a.ndim else ()
            at = _where(values, names, a.shape, index)
            return f"forward differs {at} ({_number(new[index])} vs {_number(old[index])})", lanes, singular
    return "", lanes, singular


def _within_ulps(old: Any, a: Any, b: Any) -> Any:
    """Lanes where ``a`` is within ULPS units in the last place of ``b`` (relative to the largest
    magnitude for reductions, whose rounding depends on the summation order)."""
    spacing = np.spacing(np.abs(old.astype(np.float32))).astype(np.float64)
    magnitude = float(np.max(np.abs(b[np.isfinite(b)]))) if np.isfinite(b).any() else 0.0
    tolerance = np.maximum(ULPS * spacing, 2 * ULPS * np.finfo(np.float32).eps * magnitude)
    return np.abs(a - b) <= tolerance


def _domain_mask(before: Run, after: Run, values: Sequence[Any]) -> Any:
    """For elementwise code (every output shaped like every input): the lanes where both versions
    are non-finite, which lie outside the code's own domain (sqrt of a negative). Else None."""
    if before.outs is None or after.outs is None or not values:
        return None
    shape = np.asarray(values[0]).shape
    if not shape or any(np.asarray(v).shape != shape for v in values):
        return None
    mask = np.zeros(shape, dtype=bool)
    for old, new in zip(before.outs, after.outs):
        if old is None or new is None:
            continue
        if old.shape != shape or new.shape != shape or old.dtype.kind != "f" or new.dtype.kind != "f":
            return None
        mask |= ~np.isfinite(old) & ~np.isfinite(new)
    return mask


def _out_of_domain(before: Run, after: Run) -> bool:
    """Both versions non-finite in the same lanes: the input is outside the code's own domain."""
    if before.outs is None or after.outs is None:
        return False
    found = False
    for old, new in zip(before.outs, after.outs):
        if old is None or new is None or old.shape != new.shape or old.dtype.kind != "f" or new.dtype.kind != "f":
            continue
        bad_new = ~np.isfinite(new)
        if bad_new.any():
            if not np.array_equal(bad_new, ~np.isfinite(old)):
                return False
            found = True
    return found


def judge(probe: Dict[str, Any]) -> Dict[str, Any]:
    """The verdict on one probe (a dict with status, reason, modes, inputs, before, after)."""
    if probe.get("kind") == "tape":
        return judge_tape(probe)
    names: List[str] = list(probe["inputs"])
    forward: str = probe["forward"]
    if not names:
        return _verdict("unverified", "the rewritten code reads no tensor the verifier can vary")
    tag = probe.get("id", "probe")
    try:
        before_unit = load(probe["before"], f"<tapefix-probe {tag} before>")
        after_unit = load(probe["after"], f"<tapefix-probe {tag} after>")
    except Exception as error:  # noqa: BLE001
        return _verdict("unverified", f"the probe does not load: {_describe(error)}")
    autograph = bool(probe.get("autograph", True))
    # Seeding clears TensorFlow's kernel caches (a 10x slowdown of the next ops): only for snippets
    # that draw random numbers, which must draw the same ones before and after the fix.
    seeded = "random" in probe["before"] or "random" in probe["after"]
    modes = ["eager", "function"] + (["xla"] if probe.get("xla") else [])
    inputs = cases(len(names), probe.get("shapes") or ())
    given = with_examples(names, inputs, probe)
    state = _Judgement(names, forward)
    eager_before: Dict[str, Run] = {}
    for mode in modes:
        suffix = {"eager": "", "function": " under tf.function", "xla": " under XLA"}[mode]
        # Once eager mode showed the original broken, graph modes need only run the fix; its forward
        # values are compared with the original's eager ones.
        need_before = mode == "eager" or not state.before_problems
        run_before = make_runner(before_unit, mode, len(names), autograph) if need_before else None
        run_after = make_runner(after_unit, mode, len(names), autograph)
        mode_cases = inputs
        if mode == "function":
            # A graph runs the same ops as eager mode; what it adds shows at trace time and on the
            # shapes: one scalar and every non-scalar input.
            mode_cases = inputs[:1] + [c for c in inputs if not c[0].startswith("scalar")]
        if mode == "xla":
            # XLA compiles once per shape: one non-scalar input the fixed code takes is enough.
            mode_cases = [c for c in inputs if not c[0].startswith("scalar") and c[0] in state.fitting][:1]
        state.modes.append(mode)
        for label, values in mode_cases:
            before = None
            if run_before is not None:
                if seeded:
                    tf.random.set_seed(SEED)
                before = run_before(values)
                if mode == "eager":
                    eager_before[label] = before
            if seeded:
                tf.random.set_seed(SEED)
            after = run_after(values)
            state.add(mode, suffix, label, values, before, after, eager_before.get(label))
    return _mention(state.verdict(len(inputs)), given)


class _Judgement:
    """What the runs of one probe showed so far."""

    def __init__(self, names: Sequence[str], forward: str) -> None:
        self.names = names
        self.forward = forward
        self.modes: List[str] = []
        self.before_problems: List[str] = []
        self.kinds: Set[str] = set()
        self.after_problem = ""
        self.forward_problem = ""
        self.lanes = self.singular = self.skipped = self.misfit = self.runs = self.compared = 0
        self.zero_everywhere = True
        self.misfit_error = ""
        #: the input labels the fixed code takes in eager mode
        self.fitting: Set[str] = set()

    def add(
        self,
        mode: str,
        suffix: str,
        label: str,
        values: Sequence[Any],
        before: Optional[Run],
        after: Run,
        reference: Optional[Run],
    ) -> None:
        self.runs += 1
        if mode == "eager" and not after.error:
            self.fitting.add(label)
        if (
            reference is not None
            and reference.error
            and after.error
            and "gradient" not in (reference.stage, after.stage)
        ):
            # Both versions reject the synthesised input (a shape the code does not take).
            self.misfit += 1
            self.misfit_error = self.misfit_error or after.error
            return
        ignore = _domain_mask(reference, after, values) if reference is not None else None
        if ignore is not None:
            self.skipped += int(np.count_nonzero(ignore)) if mode == "eager" else 0
        elif reference is not None and _out_of_domain(reference, after):
            self.skipped += 1 if mode == "eager" else 0
            return
        if before is not None:
            problem = gradient_problem(before, self.names, values, ignore, _none(after))
            if problem:
                kind = problem.split(" at ")[0].split(" on ")[0]
                if kind not in self.kinds:
                    self.kinds.add(kind)
                    self.before_problems.append(problem + suffix)
            elif not all_zero(before):
                self.zero_everywhere = False
        shared = _none(reference) if reference is not None and not reference.error else range(len(self.names))
        problem = gradient_problem(after, self.names, values, ignore, list(shared))
        if problem and not self.after_problem:
            if problem.startswith("raised"):
                self.after_problem = f"the fixed code {problem}{suffix} ({after.error})"
            else:
                self.after_problem = f"after the fix, {problem}{suffix}" + (f" ({after.error})" if after.error else "")
        if reference is not None and reference.outs is not None and after.outs is not None and not self.forward_problem:
            difference, lanes, singular = compare_forward(
                self.forward, reference.outs, after.outs, self.names, values, compiled=mode == "xla"
            )
            if difference:
                self.forward_problem = difference + suffix
            if mode == "eager":
                self.lanes += lanes
                self.singular += singular
                self.compared += 1

    def verdict(self, cases_count: int) -> Dict[str, Any]:
        base: Dict[str, Any] = {"modes": self.modes, "inputs": self.lanes}
        before_text = _join(self.before_problems)
        if self.after_problem:
            return _verdict("failed", self.after_problem, before=before_text, after=self.after_problem, **base)
        if self.forward_problem:
            return _verdict("failed", self.forward_problem, before=before_text, after="finite", **base)
        if self.misfit == self.runs:
            return _verdict("unverified", f"the synthesised inputs do not fit the code ({self.misfit_error})", **base)
        if not self.before_problems:
            if not (self.zero_everywhere and self.compared):
                return _verdict(
                    "unverified",
                    "the original gradient was finite on every input tried: the probe did not reproduce the problem",
                    before="finite",
                    after="finite",
                    **base,
                )
            before_text = "gradient was zero on every input"
        if not self.compared:
            return _verdict(
                "unverified",
                "the original code raised on every input, so its forward values could not be compared",
                before=before_text,
                after="finite",
                **base,
            )
        lanes = self.lanes
        forward_text = {
            "exact": f"forward bit-identical on {lanes} inputs",
            "straight-through": f"forward bit-identical on {lanes} inputs, straight-through gradient",
            "ulp": f"forward within {ULPS} ulp on {lanes} inputs",
            "singular": f"forward bit-identical on {lanes} inputs"
            + (f" except {self.singular} singular points, now finite" if self.singular else ""),
        }.get(self.forward, f"forward as documented on {lanes} inputs")
        if self.skipped:
            forward_text += f" (gradients not judged at {self.skipped} inputs outside the code's domain)"
        if self.misfit:
            forward_text += f" ({self.misfit} runs on input shapes the code does not take skipped)"
        return _verdict(
            "verified", f"{before_text} -> finite; {forward_text}", before=before_text, after="finite", **base
        )


# ---------------------------------------------------------------------------- tape probes
def _run_tape(
    unit: Callable[..., Any],
    setup: Callable[[], Any],
    mode: str,
    names: Sequence[str],
    variables: Set[str],
    values: Sequence[Any],
    autograph: bool,
    seeded: bool = False,
) -> Run:
    """One run of a tape probe's slice: it makes its own tape and asks it for gradients. The forward
    values are kept even when a gradient call raises (the slice records them right after the block)."""
    run = Run()
    sink: List[Any] = []
    try:
        # Fresh variables for every run, made eagerly: the slice's own and the synthesised ones.
        args = [tf.Variable(v) if n in variables else tf.constant(v) for n, v in zip(names, values)]
        if seeded:
            # A Keras model of the slice gets the same initial weights before and after the fix.
            tf.keras.utils.set_random_seed(SEED)
        args += list(setup())
        if mode == "eager":
            forward, grads = unit(sink, *args)
        else:

            def step(*xs: Any) -> Any:
                return unit([], *xs)

            forward, grads = tf.function(step, autograph=autograph)(*args)
        run.outs = [_array(o) for o in tf.nest.flatten(forward)]
        run.grads = [None if g is None else tf.convert_to_tensor(g).numpy() for g in tf.nest.flatten(grads)]
    except Exception as error:  # noqa: BLE001 - any exception is a finding about the slice
        run.error = _describe(error)
        if sink:
            # The block ran to its end: what raised was a gradient call.
            run.stage = "gradient"
            run.outs = [_array(o) for o in tf.nest.flatten(sink)]
    return run


def _tape_problem(run: Run) -> str:
    if run.error:
        return ("a gradient call raised " if run.stage == "gradient" else "raised ") + run.error.split(":")[0]
    assert run.grads is not None
    if not run.grads or any(g is None for g in run.grads):
        return "gradient was None"
    for grad in run.grads:
        if not np.isfinite(grad).all():
            return "gradient was " + ("NaN" if np.isnan(grad).any() else "inf")
    return ""


def judge_tape(probe: Dict[str, Any]) -> Dict[str, Any]:
    """The verdict on a tape probe: the slice as written must leave a gradient None, raise or be
    non-finite; with the fix every gradient exists and is finite, in eager mode and under
    tf.function; the forward values (what the block computes) compare as the rule's contract says,
    as numbers: a dtype the fix changes (int32 to float32) is named in the verdict."""
    names: List[str] = list(probe["inputs"])
    variables = set(probe.get("variables") or ())
    tag = probe.get("id", "probe")
    try:
        before_unit = load(probe["before"], f"<tapefix-probe {tag} before>")
        after_unit = load(probe["after"], f"<tapefix-probe {tag} after>")
        before_setup = load(probe["before"], f"<tapefix-probe {tag} before>", "__tapefix_setup")
        after_setup = load(probe["after"], f"<tapefix-probe {tag} after>", "__tapefix_setup")
    except Exception as error:  # noqa: BLE001
        return _verdict("unverified", f"the probe does not load: {_describe(error)}")
    autograph = bool(probe.get("autograph", True))
    seeded = any(word in probe[side] for word in ("keras", "random") for side in ("before", "after"))
    inputs = cases(len(names), probe.get("shapes") or ()) if names else [("as written", [])]
    given = with_examples(names, inputs, probe) if names else []
    modes: List[str] = []
    problems: List[str] = []
    after_problem = forward_problem = misfit_error = ""
    lanes = compared = misfit = runs = 0
    casts: Set[str] = set()
    reference: Dict[str, Run] = {}
    for mode in ("eager", "function"):
        suffix = "" if mode == "eager" else " under tf.function"
        modes.append(mode)
        mode_cases = (
            inputs if mode == "eager" else inputs[:1] + [c for c in inputs[1:] if not c[0].startswith("scalar")]
        )
        for label, values in mode_cases:
            runs += 1
            if mode == "eager":
                reference[label] = _run_tape(
                    before_unit, before_setup, mode, names, variables, values, autograph, seeded
                )
            before = reference[label]
            after = _run_tape(after_unit, after_setup, mode, names, variables, values, autograph, seeded)
            if before.error and after.error and before.error.split(":")[0] == after.error.split(":")[0]:
                misfit += 1
                misfit_error = misfit_error or after.error
                continue
            problem = _tape_problem(before)
            if problem and mode == "eager" and problem not in problems:
                problems.append(problem)
            problem = _tape_problem(after)
            if problem and not after_problem:
                detail = f" ({after.error})" if after.error else ""
                after_problem = f"after the fix, the slice {problem}{suffix}{detail}"
            if before.outs is not None and after.outs is not None and not forward_problem:
                difference, _, _ = compare_forward(probe["forward"], before.outs, after.outs, names, values)
                if difference:
                    forward_problem = difference.replace(" at  (", " (") + suffix
                if mode == "eager":
                    compared += 1
                    for old, new in zip(before.outs, after.outs):
                        if old is not None and new is not None:
                            lanes += int(old.size)
                            if old.dtype != new.dtype:
                                casts.add(f"{old.dtype} to {new.dtype}")
    base: Dict[str, Any] = {"modes": modes, "inputs": lanes}
    before_text = _join(problems)
    if misfit == runs:
        return _verdict("unverified", f"the extracted slice raised before and after the fix ({misfit_error})", **base)
    if after_problem:
        return _verdict("failed", after_problem, before=before_text, after=after_problem, **base)
    if forward_problem:
        return _verdict("failed", forward_problem, before=before_text, after="finite", **base)
    if not problems:
        return _verdict(
            "unverified",
            "the original gradients were finite: the probe did not reproduce the problem",
            before="finite",
            after="finite",
            **base,
        )
    if not compared or not lanes:
        return _verdict(
            "unverified",
            "the original code raised before its tape block ended, so its forward values could not be compared",
            before=before_text,
            after="finite",
            **base,
        )
    kind = f"equal after casting {', '.join(sorted(casts))}" if casts else "bit-identical"
    where = f"{lanes} inputs" if names else f"{lanes} value{'' if lanes == 1 else 's'} of the slice as written"
    verdict = _verdict(
        "verified", f"{before_text} -> finite; forward {kind} on {where}", before=before_text, after="finite", **base
    )
    return _mention(verdict, given)


def _join(problems: Sequence[str]) -> str:
    unique = list(dict.fromkeys(problems))
    return ", ".join(unique[:2]) + (f" (+{len(unique) - 2} more)" if len(unique) > 2 else "")


def _verdict(status: str, reason: str, **fields: Any) -> Dict[str, Any]:
    return {"status": status, "reason": reason, **fields}


# ---------------------------------------------------------------------------- the loop
def _load_sandbox(here: str) -> Any:
    """``_sandbox.py`` from this folder (which is no longer on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("_tapefix_sandbox", os.path.join(here, "_sandbox.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    global tf, np
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    # Whatever a snippet or TensorFlow prints must not corrupt the protocol.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    here = os.path.dirname(os.path.abspath(__file__))
    # Run as a script, Python puts this folder first on sys.path; nothing here may shadow a library.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    _limit_memory()
    sandbox = _load_sandbox(here)
    workdir = os.getcwd()
    tempfile.tempdir = workdir  # autograph writes the modules it generates there
    # Before TensorFlow starts its threads, so that every one of them inherits the confinement.
    layers = sandbox.confine(workdir)
    started = time.perf_counter()
    import numpy
    import tensorflow

    tf, np = tensorflow, numpy
    tf.get_logger().setLevel("ERROR")
    # Probes are tiny: thread pools cost more than they give, and the machine may be shared.
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    # Grappler's rewrites are meant to keep values; they cost four times the run of a probe's tiny graph.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    import_seconds = time.perf_counter() - started
    tripped = sandbox.seal(workdir, sandbox.readable_folders((here,)))
    layers.insert(0, "audit hooks")
    protocol.write(json.dumps({"ready": True, "import_seconds": import_seconds, "sandbox": layers}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        started = time.perf_counter()
        cpu = time.process_time()
        try:
            verdict = judge(request)
        except Exception as error:  # noqa: BLE001 - a verifier bug must not lose the other probes
            verdict = _verdict("unverified", f"the verifier failed on this probe: {_describe(error)}")
        refusal = sandbox.describe(tripped())
        if refusal:
            # Whatever the code made of the refusal (it may have caught the exception), it is not judged.
            verdict = _verdict("unverified", refusal, refused=True)
        verdict["seconds"] = time.perf_counter() - started
        verdict["cpu_seconds"] = time.process_time() - cpu
        verdict["id"] = request.get("id")
        protocol.write(json.dumps(verdict) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
