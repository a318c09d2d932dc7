"""The run-time recorder: what happens to the tensors a GradientTape traces, and why each gradient call
returns what it does. The only module of tapefix.tracing that imports TensorFlow.

While a trace is active (and only then) it wraps, on their classes, the methods that turn a tensor into
NumPy or Python values, GradientTape's enter/exit/watch/gradient/jacobian/batch_jacobian, and TensorFlow's
backward function; it adds an op callback to the threads that record a tape. Every wrapper calls the
original and returns its result unchanged: values are never altered. Everything is put back when the last
active trace ends.
"""

from __future__ import annotations

import sys
import threading
import weakref
from types import FrameType
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python import pywrap_tfe
from tensorflow.python.eager import backprop, record
from tensorflow.python.framework import op_callbacks, ops
from tensorflow.python.ops import resource_variable_ops

from tapefix.tracing import frames
from tapefix.tracing.frames import Classifier, Site
from tapefix.tracing.model import Diagnostic, GradientCall, Place, SourceResult

GradientTape = tf.GradientTape
_EagerTensor = ops._EagerTensorBase  # noqa: SLF001 - the class that owns the conversions
_Variable = resource_variable_ops.BaseResourceVariable

#: conversion method -> (rule code, what it did)
CONVERSIONS = {
    "__array__": ("TF104", "converted a traced tensor to NumPy"),
    "numpy": ("TF105", "converted a traced tensor to NumPy (.numpy())"),
    "__float__": ("TF106", "converted a traced tensor to a Python float"),
    "__int__": ("TF106", "converted a traced tensor to a Python int"),
    "__index__": ("TF106", "used a traced tensor as a Python index"),
    "__bool__": ("TF102", "took the truth value of a traced tensor (a Python `if`, `and`, `or`)"),
}

_ROUNDING = {"Round", "Floor", "Ceil", "Rint"}
_INTEGER_PATH = {"ArgMax", "ArgMin", "Cast", "TopKV2", "Unique", "Bucketize"}
_ASSIGN = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}
#: backward ops that say where a non-finite gradient begins, with the static rule that covers them
_NUMERIC_CODES = {
    "Log": "TF118",
    "Log1p": "TF118",
    "Xlogy": "TF118",
    "Xlog1py": "TF118",
    "LogSoftmax": "TF118",
    "Sqrt": "TF113",
    "Rsqrt": "TF113",
    "EuclideanNorm": "TF113",
    "SelectV2": "TF113",
    "Select": "TF113",
    "RealDiv": "TF103",
    "Div": "TF103",
    "Reciprocal": "TF103",
    "Inv": "TF103",
    "FloorDiv": "TF103",
    "Acos": "TF122",
    "Asin": "TF122",
    "Pow": "TF113",
}
_API_NAMES = {
    "Log": "tf.math.log",
    "Log1p": "tf.math.log1p",
    "Sqrt": "tf.math.sqrt",
    "Rsqrt": "tf.math.rsqrt",
    "RealDiv": "a division",
    "Div": "a division",
    "Reciprocal": "tf.math.reciprocal",
    "Acos": "tf.math.acos",
    "Asin": "tf.math.asin",
    "Pow": "a power (** or tf.pow)",
    "Exp": "tf.math.exp",
    "SelectV2": "tf.where",
    "EuclideanNorm": "tf.norm",
    "Xlogy": "tf.math.xlogy",
    "Mul": "a multiplication",
    "AddV2": "an addition",
    "Sub": "a subtraction",
    "MatMul": "a matrix product",
    "Sum": "tf.reduce_sum",
    "Mean": "tf.reduce_mean",
    "Round": "tf.round",
    "Floor": "tf.floor",
    "Ceil": "tf.math.ceil",
    "ArgMax": "tf.argmax",
    "ArgMin": "tf.argmin",
    "Cast": "tf.cast",
    "FloorDiv": "floor division (//)",
    "StopGradient": "tf.stop_gradient",
    "Square": "tf.square",
    "Tanh": "tf.tanh",
}


def api_name(op_type: str) -> str:
    return _API_NAMES.get(op_type, f"the {op_type} op")


class StopProgram(BaseException):
    """Raised after the last gradient call a --steps budget allows: stops the traced program there."""


class Event:
    """Something that happened to a traced tensor while a tape recorded."""

    __slots__ = ("kind", "code", "what", "user", "library", "tensor_id", "input_ids", "kept", "traced")

    def __init__(
        self, kind: str, code: str, what: str, user: Optional[Site], library: Optional[Site], tensor_id: int = 0
    ) -> None:
        self.kind, self.code, self.what, self.user, self.library = kind, code, what, user, library
        self.tensor_id = tensor_id
        self.input_ids: Tuple[int, ...] = ()
        self.kept: Tuple[Any, ...] = ()
        self.traced = False


class TapeRecord:
    """What one GradientTape saw while it recorded."""

    def __init__(self, tape: Any, site: Optional[Site]) -> None:
        self.tape_ref = weakref.ref(tape)
        self.site = site
        self.events: List[Event] = []
        #: id of each op output made while this tape recorded -> (op type, site, the tensor)
        #: and the ids of its inputs, and the inputs themselves (kept alive, so that their ids stay theirs)
        self.made: Dict[int, Tuple[str, Optional[Site], Any, Tuple[int, ...], Tuple[Any, ...]]] = {}
        self.order: List[int] = []  # ids of float outputs in execution order (forward NaN fallback)
        self.watched: Dict[int, Any] = {}
        self.calls: List[GradientCall] = []
        self.recording = False
        self.start_uid = 0  # TensorFlow's tensor counter when the tape began: later tensors were made in it


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.tapes: List[TapeRecord] = []  # tapes recording in this thread, innermost last
        self.call: Optional[_BackwardLog] = None
        self.tapes_seen: List[TapeRecord] = []  # the tape a gradient call is computing from
        self.busy = False  # inside the recorder itself: nothing it does is an event
        self.callback_depth = 0
        self.gradient_depth = 0


class _BackwardLog:
    """What the backward pass of one gradient call did, op by op."""

    def __init__(self) -> None:
        self.cuts: List[Tuple[str, Any, int]] = []  # (op type, forward outputs, input index)
        self.nonfinite: Optional[Tuple[str, Any, Any, Any]] = None  # (op type, inputs, outputs, grads)
        self.raised: Optional[Tuple[str, Any, BaseException]] = None


class Recorder:
    """One active trace: the classifier for user code, the tape records, and the finished calls."""

    def __init__(
        self,
        roots: Sequence[str],
        steps: Optional[int] = None,
        on_call: Optional[Callable[[GradientCall], None]] = None,
    ) -> None:
        self.classify = Classifier(roots)
        self.steps = steps
        self.on_call = on_call
        self.calls: List[GradientCall] = []
        self.lock = threading.Lock()
        self.tapes: weakref.WeakKeyDictionary[Any, TapeRecord] = weakref.WeakKeyDictionary()
        #: outputs of ops run outside any tape in the tracing thread: id -> (weakref, op type, site)
        #: and the ids of everything it was computed from
        self.outside: Dict[int, Tuple[Any, str, Optional[Site], FrozenSet[int]]] = {}
        self.analysis: Dict[str, Any] = {}  # static findings per file, for the fixes

    # -- events -------------------------------------------------------------------------------------
    def record_tape(self, tape: Any) -> TapeRecord:
        with self.lock:
            rec = self.tapes.get(tape)
            if rec is None:
                user, _ = frames.walk(sys._getframe(1), self.classify)
                rec = self.tapes[tape] = TapeRecord(tape, user)
            return rec


_state = _ThreadState()
_active: List[Recorder] = []
_install_lock = threading.Lock()
_originals: Dict[Tuple[Any, str], Any] = {}
_ABSENT = object()


def current() -> Optional[Recorder]:
    return _active[-1] if _active else None


# -- the conversions ------------------------------------------------------------------------------------


def _traced(value: Any) -> bool:
    try:
        target = value.handle if isinstance(value, _Variable) else value
        return bool(record.should_record_backprop([target]))
    except Exception:  # noqa: BLE001 - a value TensorFlow cannot ask about is not traced
        return False


def _wrap_conversion(cls: type, name: str) -> None:
    original = cls.__dict__[name]
    code, what = CONVERSIONS[name]

    def conversion(self: Any, *args: Any, **kwargs: Any) -> Any:
        st = _state
        if st.tapes and not st.busy and _active:
            st.busy = True
            try:
                if _traced(self):
                    recorder = _active[-1]
                    user, library = frames.walk(sys._getframe(1), recorder.classify)
                    event = Event("conversion", code, what, user, library, id(self))
                    for rec in st.tapes:
                        if rec.recording:
                            rec.events.append(event)
            finally:
                st.busy = False
        return original(self, *args, **kwargs)

    conversion.__name__ = original.__name__
    conversion.__doc__ = original.__doc__
    conversion.__wrapped__ = original  # type: ignore[attr-defined]
    _originals[(cls, name)] = original
    setattr(cls, name, conversion)


def _array_function(self: Any, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
    """NumPy's dispatch protocol: ``np.mean(t)``, ``np.round(t)``, ``np.dot(t, u)`` ask the tensor first.
    Recorded, then NumPy's own implementation runs exactly as it would have without the protocol."""
    st = _state
    if st.tapes and not st.busy and _active:
        st.busy = True
        try:
            if any(_traced(a) for a in _leaves(args)):
                _record_conversion(
                    sys._getframe(1),
                    f"np.{func.__name__}",
                    "TF104",
                    f"converted a traced tensor to NumPy (np.{func.__name__})",
                )
        finally:
            st.busy = False
    return func._implementation(*args, **kwargs)


def _leaves(args: Any) -> List[Any]:
    out: List[Any] = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, (tf.Tensor, _Variable)))
        elif isinstance(a, (tf.Tensor, _Variable)):
            out.append(a)
    return out


def _record_conversion(frame: Any, name: str, code: str, what: str) -> None:
    recorder = _active[-1]
    user, library = frames.walk(frame, recorder.classify)
    event = Event("conversion", code, what, user, library)
    for rec in _state.tapes:
        if rec.recording:
            rec.events.append(event)


#: NumPy's converters read an EagerTensor through the buffer protocol, which no Python method of the
#: tensor sees; while a trace is active, numpy.asarray and its kin are wrapped (the wrapper records, then
#: calls the original with the same arguments and returns its result)
_CONVERTER_NAMES = ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray")


def _wrap_converter(name: str) -> None:
    original = getattr(np, name)

    def converter(*args: Any, **kwargs: Any) -> Any:
        if args and _state.tapes and isinstance(args[0], (tf.Tensor, _Variable)):
            st = _state
            if not st.busy and _active:
                st.busy = True
                try:
                    if _traced(args[0]):
                        _record_conversion(
                            sys._getframe(1), f"np.{name}", "TF105", f"converted a traced tensor to NumPy (np.{name})"
                        )
                finally:
                    st.busy = False
        return original(*args, **kwargs)

    converter.__name__ = name
    converter.__doc__ = original.__doc__
    converter.__wrapped__ = original  # type: ignore[attr-defined]
    _originals[(np, name)] = original
    setattr(np, name, converter)


def _wrap_variable_read() -> None:
    """Reading a variable through convert_to_tensor runs no op callback: the read is linked to the
    variable's handle here, so the recorded graph reaches the variable."""
    original = _Variable.__dict__["_read_variable_op"]

    def _read_variable_op(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        st = _state
        if _active and not st.busy and st.call is None and isinstance(result, ops.EagerTensor):
            st.busy = True
            try:
                handle = self.handle
                recording = [rec for rec in st.tapes if rec.recording]
                if recording:
                    for rec in recording:
                        if id(result) not in rec.made:
                            site, _ = frames.walk(sys._getframe(1), _active[-1].classify)
                            rec.made[id(result)] = ("ReadVariableOp", site, result, (id(handle),), (handle,))
                else:
                    outside = _active[-1].outside
                    if id(result) not in outside or outside[id(result)][0]() is not result:
                        outside[id(result)] = (weakref.ref(result), "ReadVariableOp", None, frozenset((id(handle),)))
            except Exception:  # noqa: BLE001
                pass
            finally:
                st.busy = False
        return result

    _read_variable_op.__doc__ = original.__doc__
    _originals[(_Variable, "_read_variable_op")] = original
    _Variable._read_variable_op = _read_variable_op


# -- the op callback --------------------------------------------------------------------------------------


def _op_callback(op_type: str, inputs: Any, attrs: Any, outputs: Any, op_name: Any = None, graph: Any = None) -> None:
    st = _state
    if graph is not None or st.busy or not _active or st.call is not None:
        return None
    if isinstance(op_type, bytes):
        op_type = op_type.decode()
    recorder = _active[-1]
    st.busy = True
    try:
        recording = [rec for rec in st.tapes if rec.recording]
        site = None
        frame = sys._getframe(1)
        inputs_ids = tuple(id(i) for i in inputs or ())
        if recording:
            inputs_kept = tuple(inputs or ())  # kept alive with the record, so their ids stay theirs
            site, library = frames.walk(frame, recorder.classify)
            for rec in recording:
                for out in outputs or ():
                    rec.made[id(out)] = (op_type, site, out, inputs_ids, inputs_kept)
                    if out.dtype.is_floating:
                        rec.order.append(id(out))
            # whether an input is traced is decided later, on the recorded graph: at this point TensorFlow
            # may not have recorded the op that made the input yet
            if op_type not in _DIFFERENTIABLE:
                event = _op_event(op_type, attrs, inputs, site, library)
                if event is None:
                    if op_type != "Cast":  # a cast is an event or not by its destination type
                        _DIFFERENTIABLE.add(op_type)
                else:
                    event.kept = inputs_kept
                    if op_type in _ASSIGN and inputs:  # reading the variable later reads what was assigned
                        event.tensor_id, event.input_ids = id(inputs[0]), inputs_ids[1:]
                    else:
                        event.tensor_id, event.input_ids = (id(outputs[0]) if outputs else 0), inputs_ids
                    # an input read from a variable by TensorFlow's C fast path has no op callback and no
                    # place in the recorded graph; whether the tape traces it is known now
                    event.traced = bool(inputs) and _traced_inputs(inputs)
                    for rec in recording:
                        rec.events.append(event)
        elif outputs:
            site, _ = frames.walk(frame, recorder.classify)
            outside = recorder.outside
            if len(outside) > 20000:
                for key in [k for k, v in outside.items() if v[0]() is None]:
                    del outside[key]
                if len(outside) > 20000:
                    outside.clear()
            # what each value depends on is summarised while its inputs are alive (their ids are theirs
            # only as long as they live): the ids of every input and of everything they depended on
            deps = set(inputs_ids)
            for value in inputs or ():
                entry = outside.get(id(value))
                if entry is not None and entry[0]() is value:
                    deps.update(entry[3])
                    if len(deps) > 512:
                        break
            frozen = frozenset(deps)
            for out in outputs:
                try:
                    outside[id(out)] = (weakref.ref(out), op_type, site, frozen)
                except TypeError:
                    pass
    finally:
        st.busy = False
    return None


#: op types that _op_event has nothing to say about, whatever their inputs
_DIFFERENTIABLE: set = set()  # type: ignore[type-arg]


def _traced_inputs(inputs: Any) -> bool:
    try:
        return bool(record.should_record_backprop([i.handle if isinstance(i, _Variable) else i for i in inputs]))
    except Exception:  # noqa: BLE001
        return False


def _attr(attrs: Any, name: str) -> Any:
    if not attrs:
        return None
    for i in range(0, len(attrs) - 1, 2):
        if attrs[i] == name:
            return attrs[i + 1]
    return None


def _op_event(op_type: str, attrs: Any, inputs: Any, site: Optional[Site], library: Optional[Site]) -> Optional[Event]:
    if op_type in _ASSIGN:
        return Event(
            "assign",
            "TF115",
            "assigned a traced value to a variable: the tape does not record "
            "assignments, so reading the variable later is cut from the gradient",
            site,
            library,
        )
    if op_type in ("VarHandleOp",):
        return Event(
            "variable",
            "TF120",
            "created a variable inside the tape: its value starts a new path with no gradient to what it was made from",
            site,
            library,
        )
    if op_type in ("FloorDiv", "TruncateDiv"):
        # registered gradients that return None (TensorFlow passes them no inputs or outputs to look at)
        return Event("op", "TF101", f"{api_name(op_type)} has no gradient (None)", site, library)
    if op_type in _ROUNDING:
        return Event("op", "TF101", f"{api_name(op_type)} has no gradient (None)", site, library)
    if op_type == "Cast":
        dst = _attr(attrs, "DstT")
        try:
            dtype = tf.as_dtype(dst)
        except Exception:  # noqa: BLE001
            return None
        if dtype.is_integer or dtype == tf.bool:
            return Event("op", "TF114", f"tf.cast to {dtype.name} has no gradient (None)", site, library)
        return None
    if op_type in ("ArgMax", "ArgMin"):
        return Event("op", "TF114", f"{api_name(op_type)} has no gradient (None)", site, library)
    if op_type == "StopGradient":
        return Event("op", "TF124", "tf.stop_gradient cuts the gradient here", site, library)
    if op_type in ("PyFunc", "PyFuncStateless", "NumpyFunction"):
        return Event("op", "TF116", "tf.numpy_function has no gradient (None)", site, library)
    try:
        registered = ops._gradient_registry.lookup(op_type)  # noqa: SLF001
    except LookupError:
        return Event("op", "TF123", f"the {op_type} op has no registered gradient", site, library)
    if registered is None:
        return Event("op", "TF123", f"the {op_type} op is not differentiable (None)", site, library)
    return None


# -- the backward pass ----------------------------------------------------------------------------------


def _backward(
    op_name: str,
    attr_tuple: Any,
    num_inputs: int,
    inputs: Any,
    outputs: Any,
    out_grads: Any,
    skip_input_indices: Any,
    forward_pass_name_scope: Any,
) -> Any:
    log = _state.call
    if log is None:
        return backprop._gradient_function(
            op_name,
            attr_tuple,
            num_inputs,
            inputs,
            outputs,
            out_grads,  # noqa: SLF001
            skip_input_indices,
            forward_pass_name_scope,
        )
    try:
        result = backprop._gradient_function(
            op_name,
            attr_tuple,
            num_inputs,
            inputs,
            outputs,
            out_grads,  # noqa: SLF001
            skip_input_indices,
            forward_pass_name_scope,
        )
    except BaseException as error:
        if log.raised is None:
            log.raised = (op_name, outputs, error)
        raise
    try:
        skip = set(skip_input_indices or ())
        # one gradient function returns a bare tensor for its one input: never iterate over a tensor
        grads = list(result) if isinstance(result, (list, tuple)) else [result]
        for index, grad in enumerate(grads[:num_inputs]):
            if index in skip:
                continue
            # TensorFlow passes no inputs to an op whose gradient does not need them; the recorded op has them
            value = inputs[index] if inputs is not None and index < len(inputs) else None
            if value is None and outputs:
                entry = _made_anywhere(id(outputs[0]))
                if entry is not None and index < len(entry[4]):
                    value = entry[4][index]
            if grad is None:
                dtype = getattr(value, "dtype", None)
                if dtype is not None and dtype.is_floating:
                    log.cuts.append((op_name, outputs, index))
            elif log.nonfinite is None and not _finite(grad):
                # the backward pass runs from the target to the sources: the first op whose gradient is not
                # finite is where it begins
                log.nonfinite = (op_name, inputs, outputs, result)
    except Exception:  # noqa: BLE001 - never let the diagnosis break the program
        pass
    return result


def _made_anywhere(key: int) -> Optional[Tuple[str, Optional[Site], Any, Tuple[int, ...], Tuple[Any, ...]]]:
    """The record of the op that made a tensor, in the tape a gradient call is computing from."""
    for rec in _state.tapes_seen:
        entry = rec.made.get(key)
        if entry is not None:
            return entry
    return None


def _array(value: Any) -> Optional[np.ndarray]:
    if isinstance(value, tf.IndexedSlices):
        value = value.values
    if not isinstance(value, (ops.EagerTensor, _Variable, np.ndarray, float, int)):
        return None
    dtype = getattr(value, "dtype", None)
    if dtype is not None and hasattr(dtype, "is_floating") and not (dtype.is_floating or dtype.is_complex):
        return None
    try:
        if isinstance(value, _Variable):
            value = value.value()
        if isinstance(value, ops.EagerTensor):
            return np.asarray(value._numpy())  # noqa: SLF001 - the unwrapped conversion: not an event
        return np.asarray(value)
    except Exception:  # noqa: BLE001
        return None


def _finite(value: Any) -> bool:
    array = _array(value)
    if array is None or array.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(array).all())


def _first_nonfinite(value: Any) -> Optional[str]:
    array = _array(value)
    if array is None or array.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
    shown = array[index] if index else array
    where = f" at index {list(index)}" if index else ""
    return f"{float(np.real(shown))!r}{where}".replace("nan", "nan").replace("'", "")


# -- GradientTape ---------------------------------------------------------------------------------------


def _wrap_tape() -> None:
    enter, exit_, watch_ = GradientTape.__enter__, GradientTape.__exit__, GradientTape.watch
    stop_recording = GradientTape.stop_recording

    def __enter__(self: Any) -> Any:
        recorder = current()
        if recorder is not None and not _state.busy:
            rec = recorder.record_tape(self)
            rec.recording = True
            rec.start_uid = ops.uid()
            if rec not in _state.tapes:
                _state.tapes.append(rec)
            _callback_on()
        return enter(self)

    def __exit__(self: Any, typ: Any, value: Any, tb: Any) -> Any:
        try:
            return exit_(self, typ, value, tb)
        finally:
            recorder = current()
            rec = recorder.tapes.get(self) if recorder is not None else None
            if rec is not None and rec in _state.tapes:
                rec.recording = False
                _state.tapes.remove(rec)
                _callback_off()

    def watch(self: Any, tensor: Any) -> Any:
        recorder = current()
        if recorder is not None:
            rec = recorder.record_tape(self)
            for t in tf.nest.flatten(tensor, expand_composites=True):
                rec.watched[id(t)] = t
        return watch_(self, tensor)

    def stop_recording_(self: Any) -> Any:
        recorder = current()
        rec = recorder.tapes.get(self) if recorder is not None else None
        manager = stop_recording(self)
        if rec is None:
            return manager
        return _Paused(rec, manager)

    for name, fn in (
        ("__enter__", __enter__),
        ("__exit__", __exit__),
        ("watch", watch),
        ("stop_recording", stop_recording_),
    ):
        _originals[(GradientTape, name)] = GradientTape.__dict__[name]
        fn.__name__ = name
        setattr(GradientTape, name, fn)
    for kind in ("gradient", "jacobian", "batch_jacobian"):
        _originals[(GradientTape, kind)] = GradientTape.__dict__[kind]
        setattr(GradientTape, kind, _gradient_wrapper(kind, GradientTape.__dict__[kind]))


class _Paused:
    """tape.stop_recording(): ops inside are not the tape's."""

    def __init__(self, rec: TapeRecord, manager: Any) -> None:
        self.rec, self.manager = rec, manager

    def __enter__(self) -> Any:
        self.rec.recording = False
        return self.manager.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        self.rec.recording = True
        return self.manager.__exit__(*exc)


def _callback_on() -> None:
    st = _state
    if st.callback_depth == 0:
        op_callbacks.add_op_callback(_op_callback)
    st.callback_depth += 1


def _callback_off() -> None:
    st = _state
    st.callback_depth -= 1
    if st.callback_depth == 0:
        try:
            op_callbacks.remove_op_callback(_op_callback)
        except (KeyError, ValueError):
            pass


def _gradient_wrapper(kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def gradient(self: Any, *args: Any, **kwargs: Any) -> Any:
        st = _state
        recorder = current()
        if recorder is None or st.gradient_depth or st.busy:
            return original(self, *args, **kwargs)
        rec = recorder.record_tape(self)
        caller: Optional[FrameType] = sys._getframe(1)
        while caller is not None and caller.f_code.co_filename.endswith(("autograph/impl/api.py",)):
            caller = caller.f_back
        user, _ = frames.walk(caller, recorder.classify)
        target = args[0] if args else kwargs.get("target")
        sources = args[1] if len(args) > 1 else kwargs.get("sources")
        eager = tf.executing_eagerly()
        log = _BackwardLog()
        st.gradient_depth += 1
        st.call = log
        st.tapes_seen = [rec]
        error: Optional[BaseException] = None
        result: Any = None
        try:
            result = original(self, *args, **kwargs)
        except BaseException as caught:
            error = caught
        finally:
            st.call = None
            st.tapes_seen = []
            st.gradient_depth -= 1
        st.busy = True
        try:
            call = _diagnose(recorder, rec, kind, user, target, sources, result, error, log, eager)
        except Exception as failure:  # noqa: BLE001 - the program goes on; the trace says what it could not do
            call = GradientCall(
                len(recorder.calls) + 1,
                kind,
                frames.place(user),
                "?",
                [],
                error=f"tapefix could not diagnose this call: {failure!r}",
            )
        finally:
            st.busy = False
        with recorder.lock:
            recorder.calls.append(call)
            rec.calls.append(call)
        if not getattr(self, "_persistent", False):
            rec.made.clear()
            rec.order.clear()
        if recorder.on_call is not None:
            recorder.on_call(call)
        if error is not None:
            raise error
        if recorder.steps is not None and len(recorder.calls) >= recorder.steps:
            raise StopProgram()
        return result

    gradient.__name__ = original.__name__
    gradient.__doc__ = original.__doc__
    # autograph must call the wrapper as it is, not convert it into graph code
    wrapped: Callable[..., Any] = tf.autograph.experimental.do_not_convert(gradient)
    return wrapped


# -- the diagnosis ----------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, _Variable):
        return f"tf.Variable {value.name!r}"
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return "a NumPy value"
    if isinstance(value, (float, int)):
        return f"a Python {type(value).__name__}"
    return type(value).__name__


def _source_names(expression: Optional[str], elements: List[str], flat: List[Any]) -> List[str]:
    if elements and len(elements) == len(flat):
        return elements
    if len(flat) == 1 and expression:
        return [expression]
    names = []
    for i, value in enumerate(flat):
        base = f"{expression or 'sources'}[{i}]"
        if isinstance(value, _Variable):
            base += f" ({getattr(value, 'path', None) or value.name})"
        names.append(base)
    return names


def _diagnose(
    recorder: Recorder,
    rec: TapeRecord,
    kind: str,
    user: Optional[Site],
    target: Any,
    sources: Any,
    result: Any,
    error: Optional[BaseException],
    log: _BackwardLog,
    eager: bool,
) -> GradientCall:
    at = frames.place(user, frames.display_path)
    target_text, sources_text, elements = frames.call_arguments(at.text if at else "")
    target_name = target_text or "the target"
    try:
        flat_sources = tf.nest.flatten(sources)
    except Exception:  # noqa: BLE001
        flat_sources = [sources]
    names = _source_names(sources_text, elements, flat_sources)
    call = GradientCall(len(recorder.calls) + 1, kind, at, target_name, [], mode="eager" if eager else "graph")
    if error is not None:
        call.error = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        call.sources = [SourceResult(n, "raised") for n in names]
        call.diagnostics = _explain_raise(recorder, rec, call, target, flat_sources, names, error, log)
        return call
    flat_results: List[Any]
    if kind == "gradient":
        try:
            flat_results = tf.nest.flatten(result)
        except Exception:  # noqa: BLE001
            flat_results = [result]
        if len(flat_results) != len(flat_sources):
            flat_results = (flat_results + [None] * len(flat_sources))[: len(flat_sources)]
    else:
        flat_results = tf.nest.flatten(result) if result is not None else [None]
        if len(flat_results) != len(flat_sources):
            flat_results = (flat_results + [None] * len(flat_sources))[: len(flat_sources)]
    none_names, nan_names = [], []
    for name, value, got in zip(names, flat_sources, flat_results):
        if got is None:
            call.sources.append(SourceResult(name, "none"))
            none_names.append((name, value))
            continue
        if not eager:
            call.sources.append(SourceResult(name, "present"))
            continue
        array = _array(got)
        finite = array is None or array.dtype.kind not in "fc" or bool(np.isfinite(array).all())
        norm = None
        if array is not None and array.dtype.kind in "fc" and finite:
            # elementwise, not np.linalg.norm: BLAS threads would compete with TensorFlow's own
            norm = float(np.sqrt(np.sum(np.square(np.abs(array), dtype=np.float64))))
        call.sources.append(SourceResult(name, "present" if finite else "nonfinite", norm))
        if not finite:
            nan_names.append(name)
    if none_names:
        call.diagnostics.extend(_explain_none(recorder, rec, call, target, none_names, log, eager))
    if nan_names:
        call.diagnostics.extend(_explain_nonfinite(recorder, rec, call, target, nan_names, log))
    return call


def _event_diagnostic(
    recorder: Recorder, event: Event, call: GradientCall, kind: str, sources: Tuple[str, ...], lead: str
) -> Optional[Diagnostic]:
    where = frames.place(event.user, frames.display_path)
    if where is None:
        return None
    library = frames.place(event.library, frames.display_path)
    message = f"`{where.text}` {event.what}" if where.text else event.what
    explanation = [lead]
    if library is not None:
        message = f"`{where.text}` calls into {library.path}, which {event.what}"
        explanation.append(f"inside the library: {library.label()}: `{library.text}`")
    return Diagnostic(event.code, message, where, explanation, kind, sources, call.target, call.place, library)


def _path_lead(names: Sequence[str], call: GradientCall, verb: str = "is cut here") -> str:
    listed = ", ".join(f"`{n}`" for n in names)
    at = f" ({call.kind} at {call.place.label()})" if call.place else ""
    return f"the path from {listed} to `{call.target}`{at} {verb}: gradient None"


def _explain_none(
    recorder: Recorder,
    rec: TapeRecord,
    call: GradientCall,
    target: Any,
    none: List[Tuple[str, Any]],
    log: _BackwardLog,
    eager: bool,
) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    tape = rec.tape_ref()
    watched_vars = {id(v) for v in (tape.watched_variables() if tape is not None else ())}
    rest: List[str] = []
    tape_at = frames.place(rec.site, frames.display_path)
    for name, value in none:
        value = _unwrap(value)
        where = call.place or tape_at
        if where is None:
            rest.append(name)
            continue
        dtype = getattr(value, "dtype", None)
        if dtype is not None and hasattr(dtype, "is_integer") and (dtype.is_integer or dtype == tf.bool):
            out.append(
                Diagnostic(
                    "TF111",
                    f"`{name}` is an integer tensor ({dtype.name}): only floating-point sources get a gradient",
                    where,
                    [
                        f"cast it to float before the tape and "
                        f"watch that: gradient of `{call.target}` with respect to `{name}` is None"
                    ],
                    "none",
                    (name,),
                    call.target,
                    call.place,
                )
            )
            continue
        if isinstance(value, _Variable):
            auto = getattr(tape, "_watch_accessed_variables", True)
            if id(value) not in watched_vars and (not value.trainable or not auto):
                why = (
                    "it is not trainable (trainable=False), so the tape never watched it"
                    if not value.trainable
                    else "the tape was made with watch_accessed_variables=False and never watched it"
                )
                code = "TF119" if not value.trainable else "TF110"
                out.append(
                    Diagnostic(
                        code,
                        f"`{name}` was never watched: {why}",
                        where,
                        [f"gradient of `{call.target}` with respect to `{name}` is None"],
                        "none",
                        (name,),
                        call.target,
                        call.place,
                    )
                )
                continue
        elif isinstance(value, tf.Tensor) and eager and id(value) not in rec.watched and id(value) not in rec.made:
            out.append(
                Diagnostic(
                    "TF110",
                    f"`{name}` was never watched: it is a tensor, not a tf.Variable, and "
                    "no tape.watch() was called on it",
                    where,
                    [
                        f"call tape.watch({name}) at the start of the tape"
                        + (f" ({tape_at.label()})" if tape_at else "")
                        + ", or make it a tf.Variable"
                    ],
                    "none",
                    (name,),
                    call.target,
                    call.place,
                )
            )
            continue
        rest.append(name)
    if not rest:
        return out
    names = tuple(rest)
    lead = _path_lead(names, call)
    flat_targets = _flatten(target)
    ancestors = _ancestors(rec.made, [id(t) for t in flat_targets])
    # ops see a variable as itself (inputs not yet converted) or through its handle
    source_ids = {_key(value) for name, value in none if name in names}
    source_ids |= {id(_unwrap(value)) for name, value in none if name in names}
    # 1. an op on the recorded path had no gradient (seen by the backward pass)
    for op_type, outputs, _index in log.cuts:
        entry = rec.made.get(id(outputs[0])) if outputs else None
        if entry is None:
            continue
        event = _op_event(op_type, _cast_attrs(outputs), (), entry[1], None) or Event(
            "op", "TF123", f"{api_name(op_type)} has no gradient (None)", entry[1], None
        )
        diagnostic = _event_diagnostic(recorder, event, call, "none", names, lead)
        if diagnostic is not None:
            out.append(diagnostic)
            return out
    # 2. an op with no gradient (not even recorded for the backward pass) between the sources and the target
    for event in rec.events:
        if (
            event.kind in ("op", "assign", "variable")
            and event.tensor_id in ancestors
            and (
                event.traced
                or source_ids & _ancestors(rec.made, list(event.input_ids))
                or _reads_source(event, rec, [_unwrap(value) for name, value in none if name in names])
            )
        ):
            diagnostic = _event_diagnostic(recorder, event, call, "none", names, lead)
            if diagnostic is not None:
                out.append(diagnostic)
                return out
    # 3. the target is computed from a value made before the tape began, which depends on the sources
    if eager:
        for leaf in ancestors:
            if leaf in rec.made:
                continue
            made = recorder.outside.get(leaf)
            if made is None or made[0]() is None:
                continue
            is_target = any(id(t) == leaf for t in flat_targets)
            # the whole target made outside the tape can have no gradient, whatever it was made from; a
            # value it is made from counts when it was computed from the sources
            if is_target or source_ids & made[3]:
                origin = frames.place(made[2], frames.display_path)
                if origin is None:
                    continue
                if is_target:
                    message = f"`{call.target}` was computed outside the tape (`{origin.text}`)"
                else:
                    message = (
                        f"`{origin.text}` was computed before the tape began, and `{call.target}` "
                        "depends on the sources only through it"
                    )
                out.append(
                    Diagnostic(
                        "TF117",
                        message,
                        origin,
                        [
                            lead,
                            "compute it inside the `with tf.GradientTape()` block"
                            + (f" ({tape_at.label()})" if tape_at else ""),
                        ],
                        "none",
                        names,
                        call.target,
                        call.place,
                    )
                )
                return out
    # 4. a traced tensor was turned into NumPy or Python values inside the tape
    cuts = [e for e in rec.events if e.kind == "conversion"]
    if eager and cuts:
        shown = 0
        for event in cuts:
            diagnostic = _event_diagnostic(
                recorder, event, call, "none", names, lead if shown == 0 else "also converted while the tape recorded"
            )
            if diagnostic is not None and all(d.place != diagnostic.place for d in out):
                out.append(diagnostic)
                shown += 1
            if shown == 3:
                break
        if shown:
            return out
    # 5. the target is not a tensor at all
    for value in flat_targets:
        if isinstance(value, (np.ndarray, np.generic, float, int)):
            where = call.place or tape_at
            if where is not None:
                out.append(
                    Diagnostic(
                        "TF104",
                        f"`{call.target}` is {_describe(value)}, not a tensor: it was "
                        "converted out of TensorFlow before the gradient call",
                        where,
                        [lead],
                        "none",
                        names,
                        call.target,
                        call.place,
                    )
                )
                return out
    # 6. a value that entered the tape from NumPy or Python (through the buffer protocol a NumPy ufunc
    #    reads, which nothing in Python sees) feeds the target: the op that took it is where the path is cut
    if eager:
        entered = _entered_from_outside(rec, ancestors, flat_targets)
        if entered is not None:
            site, value = entered
            origin = frames.place(site, frames.display_path)
            if origin is not None:
                shape = "x".join(str(d) for d in value.shape) or "scalar"
                out.append(
                    Diagnostic(
                        "",
                        f"`{origin.text}` takes a value ({value.dtype.name}, {shape}) that no TensorFlow op "
                        "computed while the tape recorded: it came from NumPy or Python",
                        origin,
                        [lead, "a traced tensor was probably converted to NumPy or Python values on this line"],
                        "none",
                        names,
                        call.target,
                        call.place,
                    )
                )
                return out
    where = call.place or tape_at
    if where is None:
        return out
    if not eager:
        out.append(
            Diagnostic(
                "",
                f"`{call.target}` does not depend on {', '.join(f'`{n}`' for n in names)} in this tf.function",
                where,
                [lead, "run with --eager (tapefix.trace(eager=True)) to see which line cuts it"],
                "none",
                names,
                call.target,
                call.place,
            )
        )
        return out
    out.append(
        Diagnostic(
            "",
            f"`{call.target}` does not depend on {', '.join(f'`{n}`' for n in names)}: no op "
            "the tape recorded connects them",
            where,
            [
                lead,
                "these sources are not used in computing the target while the tape records "
                "(unused layers or variables, or a target made from other values)",
            ],
            "none",
            names,
            call.target,
            call.place,
        )
    )
    return out


def _entered_from_outside(
    rec: TapeRecord, ancestors: set[int], flat_targets: List[Any]
) -> Optional[Tuple[Optional[Site], Any]]:
    """The recorded op on the target's graph that took the largest floating-point array made during the
    tape by no op (converted from NumPy), with its site."""
    best: Optional[Tuple[int, int, Optional[Site], Any]] = None
    for key in ancestors:
        entry = rec.made.get(key)
        if entry is None:
            continue
        for value in entry[4]:
            if id(value) in rec.made or not isinstance(value, ops.EagerTensor) or not value.dtype.is_floating:
                continue
            if getattr(value, "_id", 0) <= rec.start_uid:
                continue
            size = int(np.prod(value.shape)) if value.shape.rank else 1
            if size < 2:  # a Python number in an expression (`x * 2.0`) is made the same way
                continue
            rank = (size, -value._id)  # noqa: SLF001 - the largest, then the earliest
            if best is None or rank > (best[0], best[1]):
                best = (size, -value._id, entry[1], value)  # noqa: SLF001
    if best is None:
        return None
    return best[2], best[3]


def _reads_source(event: Event, rec: TapeRecord, sources: List[Any]) -> bool:
    """Whether an input of the event's op, made by no recorded op, holds the value of a source variable:
    TensorFlow's C fast path reads a variable given straight to an op that has no gradient without a
    callback and without the tape, so only the value tells."""
    for value in event.kept:
        if id(value) in rec.made or not isinstance(value, ops.EagerTensor):
            continue
        seen = _array(value)
        if seen is None:
            continue
        for source in sources:
            if isinstance(source, _Variable) and tuple(source.shape) == seen.shape:
                current = _array(source)
                if current is not None and current.dtype == seen.dtype and np.array_equal(current, seen):
                    return True
    return False


def _unwrap(value: Any) -> Any:
    """A Keras 3 variable's TensorFlow variable; anything else as it is."""
    if not isinstance(value, (_Variable, tf.Tensor)):
        inner = getattr(value, "_value", None)
        if isinstance(inner, _Variable):
            return inner
    return value


def _key(value: Any) -> int:
    """The id under which ops see a source: a variable through its resource handle."""
    value = _unwrap(value)
    if isinstance(value, _Variable):
        try:
            return id(value.handle)
        except Exception:  # noqa: BLE001
            return id(value)
    return id(value)


def _ancestors(made: Dict[int, Any], roots: List[int]) -> set:  # type: ignore[type-arg]
    seen = set()
    stack = list(roots)
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        entry = made.get(key)
        if entry is not None:
            stack.extend(entry[3])
    return seen


def _cast_attrs(outputs: Any) -> Tuple[Any, ...]:
    try:
        return ("DstT", outputs[0].dtype.as_datatype_enum)
    except Exception:  # noqa: BLE001
        return ()


def _flatten(value: Any) -> List[Any]:
    try:
        return list(tf.nest.flatten(value))
    except Exception:  # noqa: BLE001
        return [value]


def _explain_nonfinite(
    recorder: Recorder, rec: TapeRecord, call: GradientCall, target: Any, names: List[str], log: _BackwardLog
) -> List[Diagnostic]:
    listed = ", ".join(f"`{n}`" for n in names)
    lead = f"the gradient of `{call.target}` with respect to {listed} is not finite"
    origin: Optional[Tuple[str, Optional[Site], str]] = None
    # forward first: the first recorded op whose output is not finite
    for key in rec.order:
        entry = rec.made.get(key)
        if entry is None:
            continue
        bad = _first_nonfinite(entry[2])
        if bad is not None:
            origin = (entry[0], entry[1], f"forward value {bad}")
            break
    if origin is None and log.nonfinite is not None:
        op_type, inputs, outputs, grads = log.nonfinite
        entry = rec.made.get(id(outputs[0])) if outputs else None
        detail = "its gradient is not finite"
        for grad in grads:
            if grad is not None:
                bad = _first_nonfinite(grad)
                if bad is not None:
                    detail = f"backward value {bad}"
                    for value in inputs:
                        array = _array(value)
                        if array is not None and array.size:
                            detail += f"; forward input {_short(array)}"
                            break
                    break
        origin = (op_type, entry[1] if entry else None, detail)
    if origin is None:
        where = call.place
        if where is None:
            return []
        return [
            Diagnostic(
                "",
                f"the gradient of `{call.target}` is not finite",
                where,
                [lead, "no recorded op produced it (a tf.function? run with --eager)"],
                "nonfinite",
                tuple(names),
                call.target,
                call.place,
            )
        ]
    op_type, site, detail = origin
    where = frames.place(site, frames.display_path) or call.place
    if where is None:
        return []
    message = f"the first non-finite value came from {api_name(op_type)} (`{where.text}`), {detail}"
    return [
        Diagnostic(
            _NUMERIC_CODES.get(op_type, ""), message, where, [lead], "nonfinite", tuple(names), call.target, call.place
        )
    ]


def _short(array: np.ndarray) -> str:
    flat = array.ravel()
    if flat.size == 1:
        return repr(float(np.real(flat[0])))
    shown = ", ".join(f"{float(np.real(v)):.4g}" for v in flat[:4])
    return f"[{shown}{', ...' if flat.size > 4 else ''}]"


def _explain_raise(
    recorder: Recorder,
    rec: TapeRecord,
    call: GradientCall,
    target: Any,
    flat_sources: List[Any],
    names: List[str],
    error: BaseException,
    log: _BackwardLog,
) -> List[Diagnostic]:
    where = call.place
    text = " ".join(str(error).split())
    head = f"{type(error).__name__}: {text[:200]}"
    all_names = tuple(names)
    if isinstance(error, RuntimeError) and "non-persistent" in text:
        earlier = [c for c in rec.calls if c.place is not None]
        first = f" (the first call was at {earlier[0].place.label()})" if earlier and earlier[0].place else ""
        if where is None:
            return []
        return [
            Diagnostic(
                "TF112",
                f"second gradient call on a non-persistent tape{first}",
                where,
                [head, "make the tape persistent=True, or ask for every gradient in one call"],
                "raise",
                all_names,
                call.target,
                call.place,
            )
        ]
    if log.raised is not None:
        op_type, outputs, _ = log.raised
        entry = rec.made.get(id(outputs[0])) if outputs else None
        at = frames.place(entry[1], frames.display_path) if entry else None
        if at is not None:
            code = "TF123" if isinstance(error, LookupError) else ""
            return [
                Diagnostic(
                    code,
                    f"the gradient of {api_name(op_type)} (`{at.text}`) raised {head}",
                    at,
                    [f"{call.kind} at {call.place.label() if call.place else '?'} raised"],
                    "raise",
                    all_names,
                    call.target,
                    call.place,
                )
            ]
    if where is None:
        return []
    numpy_like = (np.ndarray, np.generic, float, int)
    bad_targets = [t for t in _flatten(target) if isinstance(t, numpy_like)]
    if bad_targets:
        cuts = [e for e in rec.events if e.kind == "conversion"]
        lead = f"the target `{call.target}` is {_describe(bad_targets[0])}, not a tensor: {call.kind} raised {head}"
        for event in cuts:
            diagnostic = _event_diagnostic(recorder, event, call, "raise", all_names, lead)
            if diagnostic is not None:
                return [diagnostic]
        return [
            Diagnostic(
                "TF104",
                f"the target `{call.target}` is {_describe(bad_targets[0])}, not a tensor",
                where,
                [head],
                "raise",
                all_names,
                call.target,
                call.place,
            )
        ]
    bad_sources = [n for n, s in zip(names, flat_sources) if isinstance(s, numpy_like)]
    if bad_sources:
        return [
            Diagnostic(
                "TF110",
                f"the source `{bad_sources[0]}` is a NumPy or Python value: a tape can only "
                "watch tensors and variables",
                where,
                [head],
                "raise",
                all_names,
                call.target,
                call.place,
            )
        ]
    return [Diagnostic("", f"{call.kind} raised {head}", where, [], "raise", all_names, call.target, call.place)]


# -- install / uninstall ------------------------------------------------------------------------------------


def install(recorder: Recorder) -> None:
    with _install_lock:
        if not _active:
            for name in CONVERSIONS:
                if name in _EagerTensor.__dict__:
                    _wrap_conversion(_EagerTensor, name)
                if name in _Variable.__dict__:
                    _wrap_conversion(_Variable, name)
            _wrap_tape()
            _wrap_variable_read()
            for cls in (_EagerTensor, _Variable):
                _originals[(cls, "__array_function__")] = cls.__dict__.get("__array_function__", _ABSENT)
                cls.__array_function__ = _array_function
            for name in _CONVERTER_NAMES:
                if hasattr(np, name):
                    _wrap_converter(name)
            pywrap_tfe.TFE_Py_RegisterGradientFunction(_backward)
        _active.append(recorder)
        _callback_on()


def uninstall(recorder: Recorder) -> None:
    with _install_lock:
        _callback_off()
        if recorder in _active:
            _active.remove(recorder)
        if not _active:
            pywrap_tfe.TFE_Py_RegisterGradientFunction(backprop._gradient_function)  # noqa: SLF001
            for (cls, name), original in _originals.items():
                if original is _ABSENT:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)
            _originals.clear()


__all__ = ["Place", "Recorder", "StopProgram", "install", "uninstall"]
