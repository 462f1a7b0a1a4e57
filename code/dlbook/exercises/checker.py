"""Checkers that tell a student *what* is wrong, not just *that* it is wrong.

A checker runs the student's function on a few cases, compares each result with a reference,
and prints one line per case. When a result is wrong it says how: the shape (and whether it is
the transpose), the worst entry, and whether the answer is off by a constant factor, a sign, or
an additive constant. Each exercise can list :class:`Mistake` s, plausible wrong answers with a
targeted hint ("you divided by the batch size twice"): if the student's output equals one of
them, the hint is printed. An :class:`Exercise` holds everything one checker runs (its cases,
reference, mistakes and tolerances); each chapter's module lists its own in ``EXERCISES``.

An exercise can also switch library functions off while the student's function runs
(:func:`switched_off`: ``torch.softmax`` in an exercise that asks for the softmax written out,
``torch.ops.aten._softmax`` behind it, ``torch.autograd.grad`` in one that asks for a gradient
derived by hand): a call raises :class:`ForbiddenCall`, which names the function and the
exercise's rule. An exercise that asks for a backward pass by hand switches autograd off as a
whole (``autograd_off``): no tensor may require grad, so no graph, and no ``grad_fn`` to call,
exists (:class:`AutogradForbidden`). The references and the known mistakes are computed outside,
so they may use what the student may not.

On failure the checker raises ``AssertionError``, so a wrong reference solution fails the book's
tests (nbval). When the student has not started (the function raises ``NotImplementedError``),
that error is passed through unchanged, as nbgrader expects.

Over 400 lines for a stated reason: comparing, diagnosing, running the student's code safely
and reporting are one pipeline, read in order; split, each part would make sense only with the
others open.

Derived in: Preface, *Teaching with this book* (exercises and checkers).
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import os
import signal
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AUTOGRAD",
    "AutogradForbidden",
    "Case",
    "CheckReport",
    "CheckTimeout",
    "Exercise",
    "ForbiddenCall",
    "Mistake",
    "check",
    "compare",
    "switched_off",
]

OK, FAIL = "\u2713", "\u2717"  # check mark, ballot x
_MISSING = object()


@dataclass
class Case:
    """One input to a student's function: ``fn(*args, **kwargs)``.

    ``expected`` may be given; otherwise the checker's ``reference`` computes it.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str = ""
    expected: Any = _MISSING


@dataclass
class Mistake:
    """A plausible wrong answer and the hint to show when the student's output equals it.

    ``wrong`` takes the same arguments as the student's function and returns the wrong output.
    """

    name: str
    wrong: Callable[..., Any]
    hint: str


class CheckTimeout(Exception):
    """The student's function ran longer than the checker's time limit."""


class ForbiddenCall(RuntimeError):
    """The student's function called a library function that its exercise switches off."""


class AutogradForbidden(ForbiddenCall):
    """The student's function used autograd in an exercise that asks for a backward pass (or a
    Jacobian) derived by hand."""


# Autograd's ways in, for ``forbidden``: refused by name, with AutogradForbidden. The last entry
# is a pattern over PyTorch's operators (see ``switched_off``): the backward formulas PyTorch has
# written, such as ``torch.ops.aten.native_layer_norm_backward`` or ``_softmax_backward_data``.
AUTOGRAD = (
    "torch.autograd.grad",
    "torch.autograd.backward",
    "torch.Tensor.backward",
    "torch.autograd.functional.jacobian",
    "torch.autograd.functional.vjp",
    "torch.autograd.functional.jvp",
    "torch.autograd.functional.hessian",
    "torch.autograd.functional.vhp",
    "torch.autograd.functional.hvp",
    "torch.autograd.forward_ad.make_dual",
    "torch.func.grad",
    "torch.func.grad_and_value",
    "torch.func.vjp",
    "torch.func.jvp",
    "torch.func.jacrev",
    "torch.func.jacfwd",
    "torch.func.hessian",
    "torch.func.linearize",
    "torch.ops.aten.*_backward*",
)


@dataclass
class CheckReport:
    """What a check found: one line per case and whether all passed."""

    title: str
    lines: list[str]
    passed: bool
    n_cases: int
    n_failed: int

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def _ipython_display_(self) -> None:
        """Show nothing: the check has printed its lines already. A checker call that ends a
        cell then leaves no second copy in the book, and nbgrader sees no result value in its
        autograded test cells (a non-numeric one makes it warn)."""


# ----------------------------------------------------------------------------- comparing values


def _to_array(x: Any) -> np.ndarray | None:
    """A NumPy view of numbers, NumPy arrays and torch tensors; None for anything else."""
    if isinstance(x, (bool, np.bool_)):
        return np.asarray(x)
    if isinstance(x, (int, float, complex, np.number)):
        return np.asarray(x)
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return None


def _fmt(x: Any) -> str:
    arr = _to_array(x)
    if arr is not None and arr.ndim > 0:
        with np.printoptions(precision=4, suppress=True, threshold=12, edgeitems=3):
            return np.array2string(arr, separator=", ").replace("\n", " ")
    if arr is not None:
        return f"{arr.item():.6g}" if np.issubdtype(arr.dtype, np.floating) else repr(arr.item())
    text = repr(x)
    return text if len(text) < 120 else text[:117] + "..."


def _shape_hint(got: tuple, exp: tuple) -> str:
    if len(got) == 0:
        return " (a single number: did you sum or average away a dimension you should keep?)"
    if got == exp[::-1] and len(got) == 2:
        return " (the transpose of the expected shape: is a matrix product the wrong way round?)"
    if int(np.prod(got, dtype=np.int64)) == int(np.prod(exp, dtype=np.int64)):
        return " (same number of entries: a reshape or transpose is off)"
    if len(got) == len(exp) - 1 and got == tuple(exp[1:]):
        return " (the leading batch dimension is missing: did you reduce over the batch?)"
    if len(got) == len(exp) + 1 and got[1:] == tuple(exp):
        return " (an extra leading dimension: did you forget to sum or average over the batch?)"
    return ""


def _diagnose(got: np.ndarray, exp: np.ndarray, rtol: float, atol: float) -> list[str]:
    """Recognisable ways in which ``got`` (same shape as ``exp``) is off."""
    hints = []
    if not np.all(np.isfinite(got)) and np.all(np.isfinite(exp)):
        hints.append(
            "your output contains NaN or inf where the expected one is finite: "
            "an overflow (exp of a large number?) or a division by zero"
        )
        return hints
    g, e = got.astype(np.float64).ravel(), exp.astype(np.float64).ravel()
    if np.allclose(g, -e, rtol=rtol, atol=atol):
        return ["the sign is flipped"]
    denom = float(e @ e)
    if denom > 0:
        c = float(g @ e) / denom
        if (
            abs(c) > 1e-12
            and not np.isclose(c, 1.0)
            and np.allclose(g, c * e, rtol=rtol * 10, atol=atol * 10)
        ):
            if abs(c) >= 1:
                msg = f"off by a constant factor: your values are {c:.6g} times the expected ones"
            else:
                msg = (
                    f"off by a constant factor: your values are the expected ones divided by "
                    f"{1 / c:.6g}"
                )
            hints.append(msg)
            return hints
    d = g - e
    if g.size > 1 and np.allclose(
        d, d.mean(), rtol=0, atol=max(atol, rtol * float(np.abs(e).max())) * 10
    ):
        hints.append(f"off by the same constant {d.mean():.6g} everywhere")
        return hints
    if (
        got.ndim == 2
        and got.shape[0] == got.shape[1]
        and np.allclose(got.T, exp, rtol=rtol, atol=atol)
    ):
        hints.append("your matrix is the transpose of the expected one")
    return hints


def compare(
    got: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-8, path: str = "output"
) -> tuple[bool, list[str]]:
    """Compare a student's ``got`` with ``expected``, recursively through dicts, lists and tuples.

    Numbers, NumPy arrays and torch tensors are compared with ``allclose(rtol, atol)`` after a
    shape check; everything else with ``==``. For a dict each key gets its own line, so the
    student sees which of several gradients is wrong.

    Returns:
        ``(ok, lines)``: whether everything matched, and human-readable lines explaining each part.
    """
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return False, [
                f"{path}: expected a dict with keys {sorted(expected)}, got {type(got).__name__}"
            ]
        lines, ok = [], True
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing:
            ok = False
            lines.append(f"{path}: missing key(s) {missing}")
        if extra:
            ok = False
            lines.append(f"{path}: unexpected key(s) {extra}")
        for k in expected:
            if k in got:
                k_ok, k_lines = compare(
                    got[k], expected[k], rtol=rtol, atol=atol, path=f"{path}[{k!r}]"
                )
                ok &= k_ok
                lines += k_lines
        return ok, lines

    if isinstance(expected, (list, tuple)) and _to_array(expected) is None:
        if not isinstance(got, (list, tuple)):
            return False, [
                f"{path}: expected a {type(expected).__name__} of length {len(expected)}, "
                f"got {type(got).__name__}"
            ]
        if len(got) != len(expected):
            return False, [f"{path}: expected length {len(expected)}, got {len(got)}"]
        lines, ok = [], True
        for i, (g, e) in enumerate(zip(got, expected)):
            i_ok, i_lines = compare(g, e, rtol=rtol, atol=atol, path=f"{path}[{i}]")
            ok &= i_ok
            lines += i_lines
        return ok, lines

    exp_arr = _to_array(expected)
    if exp_arr is None:  # strings, None, other objects
        if got == expected:
            return True, [f"{path}: {OK} equal"]
        return False, [f"{path}: expected {_fmt(expected)}, got {_fmt(got)}"]

    got_arr = _to_array(got)
    if got_arr is None:
        return False, [
            f"{path}: expected a number or array like {_fmt(expected)}, "
            f"got {type(got).__name__} {_fmt(got)}"
        ]
    if got_arr.shape != exp_arr.shape:
        return False, [
            f"{path}: expected shape {exp_arr.shape}, got {got_arr.shape}"
            + _shape_hint(got_arr.shape, exp_arr.shape)
        ]
    if exp_arr.dtype == np.bool_ or np.issubdtype(exp_arr.dtype, np.integer):
        if np.array_equal(got_arr, exp_arr):
            return True, [f"{path}: {OK} exact"]
        wrong = int(np.sum(got_arr != exp_arr))
        return False, [
            f"{path}: {wrong} of {exp_arr.size} entries differ; expected {_fmt(exp_arr)}, "
            f"got {_fmt(got_arr)}"
        ]
    if not (np.issubdtype(got_arr.dtype, np.number) or got_arr.dtype == np.bool_):
        return False, [f"{path}: expected numbers, got an array of dtype {got_arr.dtype}"]
    if np.array_equal(got_arr, exp_arr):
        return True, [f"{path}: {OK} exact"]
    g64, e64 = got_arr.astype(np.complex128 if np.iscomplexobj(got_arr) else np.float64), exp_arr
    with np.errstate(invalid="ignore"):  # inf - inf: both overflowed, compared below
        absdiff = np.abs(g64 - e64)
    if np.allclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True):
        # NaN only where both are NaN (or the same infinity): those entries agree
        diff = float(np.nan_to_num(absdiff, nan=0.0).max()) if g64.size else 0.0
        return True, [f"{path}: {OK} allclose (max |difference| {diff:.2g})"]
    absdiff = np.where(np.isnan(absdiff), np.inf, absdiff)
    worst = np.unravel_index(int(np.argmax(absdiff)), absdiff.shape) if absdiff.ndim else ()
    where = f" at index {tuple(int(i) for i in worst)}" if absdiff.ndim else ""
    line = (
        f"{path}: max |difference| {float(absdiff.max()):.4g}{where} (expected "
        f"{_fmt(exp_arr[worst] if absdiff.ndim else exp_arr)}, got "
        f"{_fmt(got_arr[worst] if absdiff.ndim else got_arr)})"
    )
    lines = [line]
    if exp_arr.size > 1:
        lines.append(f"    expected {_fmt(exp_arr)}")
        lines.append(f"    got      {_fmt(got_arr)}")
    lines += [f"    hint: {h}" for h in _diagnose(got_arr, exp_arr, rtol, atol)]
    return False, lines


# ----------------------------------------------------------------------------- running safely


@contextmanager
def _time_limit(seconds: float | None):
    """Raise :class:`CheckTimeout` after ``seconds`` (Unix main thread only; else no limit)."""
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise CheckTimeout(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _locate(path: str) -> tuple[Any, str]:
    """The object that holds a dotted path's last name, and that name:
    ``"torch.Tensor.softmax"`` gives ``(torch.Tensor, "softmax")``."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:-1]:
                owner = getattr(owner, name)
            getattr(owner, parts[-1])
        except AttributeError:
            break
        return owner, parts[-1]
    raise ValueError(f"cannot find {path!r}: expected a dotted path such as 'torch.softmax'")


def _op_name(func: Any) -> str | None:
    """The operator name of something PyTorch implements in C++ (``"_softmax"`` for
    ``torch.ops.aten._softmax``, its ``.default`` overload, ``torch._softmax``), else None."""
    from torch._ops import OpOverload, OpOverloadPacket

    if isinstance(func, OpOverload):
        return func._schema.name.split("::")[-1]
    if isinstance(func, OpOverloadPacket):
        return func._qualified_op_name.split("::")[-1]
    if isinstance(func, (types.BuiltinFunctionType, types.MethodDescriptorType)):
        return func.__name__
    return None


def _torch_name(func: Any) -> str:
    """How a student reaches ``func``: ``torch.ops.aten._softmax``, ``torch.Tensor.numpy``,
    ``torch.tensor``, ``setting torch.Tensor.requires_grad``."""
    from torch._ops import OpOverload, OpOverloadPacket

    if isinstance(func, OpOverload):
        return "torch.ops." + func._schema.name.replace("::", ".")
    if isinstance(func, OpOverloadPacket):
        return "torch.ops." + func._qualified_op_name.replace("::", ".")
    owner = getattr(func, "__self__", None)
    if isinstance(owner, types.GetSetDescriptorType):  # a property of tensors: get or set
        verb = "setting " if func.__name__ == "__set__" else "reading "
        return f"{verb}torch.Tensor.{owner.__name__}"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    head, _, tail = qualname.rpartition(".")
    if head in ("TensorBase", "_TensorBase", "Tensor"):
        return f"torch.Tensor.{tail}"
    if head == "_VariableFunctionsClass":
        return f"torch.{tail}"
    module = getattr(func, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


class _RefusingEngine:
    """Stands in for autograd's engine (``torch.autograd.Variable._execution_engine``):
    ``run_backward``, behind ``Tensor.backward``, ``torch.autograd.grad`` and ``torch.func``,
    raises; everything else is the original's."""

    def __init__(self, engine: Any, message: str) -> None:
        self._engine, self._message = engine, message

    def run_backward(self, *args: Any, **kwargs: Any) -> Any:
        raise AutogradForbidden(self._message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@contextmanager
def switched_off(paths: Sequence[str], rule: str, *, autograd_off: bool = False):
    """Make the library functions named by ``paths`` raise :class:`ForbiddenCall` inside the block.

    ``paths`` are dotted names (``"torch.softmax"``, ``"torch.Tensor.softmax"``,
    ``"torch.nn.MultiheadAttention"``); the error says ``"{rule}: {path} is switched off while
    your function runs"``. Three nets catch a call. The attribute is replaced where the path
    names it (a class by its ``__init__`` and ``forward``), so ``F.softmax(x)`` raises. A Python
    function without a closure (``torch.autograd.grad``, ``dlbook``'s own) has its code swapped
    for one that raises, so an alias imported earlier (``from dlbook.attention import
    softmax_jacobian``) raises too. And while the block runs a ``TorchFunctionMode`` refuses the
    original function however it is reached (an alias, a method, another library function that
    calls it), for the functions that take part in PyTorch's ``__torch_function__`` protocol
    (most of ``torch``, and ``torch.ops``, but not ``torch.func``).

    A path ``"torch.ops.aten.NAME"`` names one of PyTorch's operators, and NAME may be a pattern
    (``"torch.ops.aten.*_backward*"``): the mode refuses every call of an operator of that name
    the student's code makes, through ``torch.ops.aten.NAME``, its overloads (``.default``),
    ``torch.NAME`` or ``Tensor.NAME`` (the library's own calls inside an allowed function are
    not seen, so ``torch.softmax`` may run ``aten._softmax`` when only the operator is refused).
    The paths of :data:`AUTOGRAD` raise :class:`AutogradForbidden`.

    With ``autograd_off`` autograd is switched off as a whole: any call that gives or is given a
    tensor that requires grad (``torch.tensor(..., requires_grad=True)``, ``requires_grad_()``,
    setting ``requires_grad``, ops on an ``nn.Parameter``) raises :class:`AutogradForbidden`,
    and so does autograd's engine; without such a tensor there is no graph, so no ``grad_fn`` to
    call by hand either.

    Everything is put back on the way out, whatever happened inside (an exception, a time-out).
    """
    if not paths and not autograd_off:
        yield
        return
    import torch
    from torch.autograd.variable import Variable
    from torch.overrides import TorchFunctionMode

    def error(path: str) -> type[ForbiddenCall]:
        return AutogradForbidden if path in AUTOGRAD else ForbiddenCall

    def refuser(label: str, path: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise error(path)(f"{rule}: {label} is switched off while your function runs")

        return refused

    patches: list[tuple[Any, str, str]] = []  # (owner, attribute, the path the student sees)
    recode: list[tuple[types.FunctionType, str]] = []  # Python functions, whose code is swapped
    originals: dict[Any, str] = {}  # the functions themselves, for the TorchFunctionMode
    operators: list[tuple[str, str]] = []  # (pattern over operator names, its path)
    for path in paths:
        if path.startswith("torch.ops."):
            namespace, _, pattern = path[len("torch.ops.") :].partition(".")
            exact = not any(c in pattern for c in "*?[")
            if not pattern or (exact and not hasattr(getattr(torch.ops, namespace), pattern)):
                raise ValueError(
                    f"cannot find {path!r}: expected an operator such as 'torch.ops.aten._softmax'"
                )
            operators.append((pattern, path))
            continue
        owner, name = _locate(path)
        target = getattr(owner, name)
        if isinstance(target, type):  # a class: constructing it or calling an instance raises
            patches += [(target, n, path) for n in ("__init__", "forward") if hasattr(target, n)]
            continue
        patches.append((owner, name, path))
        if isinstance(target, types.FunctionType) and not target.__closure__:
            recode.append((target, path))
        with suppress(TypeError):  # an unhashable callable: the attribute alone must do
            originals[target] = path
    no_graph = (
        f"{rule}: autograd is switched off while your function runs, and {{}} made or was "
        "given a tensor that requires grad (requires_grad=True, requires_grad_(), an "
        "nn.Parameter), the start of an autograd graph"
    )

    class Refuse(TorchFunctionMode):
        def __torch_function__(self, func, kinds, args=(), kwargs=None):
            try:
                label = originals.get(func)
            except TypeError:
                label = None
            if label is not None:
                refuser(label, label)()
            name = _op_name(func) if operators else None
            for pattern, path in operators if name is not None else ():
                if fnmatch.fnmatchcase(name, pattern):
                    refuser(_torch_name(func), path)()
            out = func(*args, **(kwargs or {}))
            if autograd_off and any(
                isinstance(t, torch.Tensor) and t.requires_grad
                for t in _leaves((args, kwargs, out))
            ):
                raise AutogradForbidden(no_graph.format(_torch_name(func)))
            return out

    done: list[tuple[Any, str, Any]] = []  # (owner, attribute, what was there; _MISSING: nothing)
    swapped: list[tuple[types.FunctionType, types.CodeType]] = []  # (function, its own code)
    engine = Variable.__dict__["_execution_engine"]
    try:
        for owner, name, path in patches:
            done.append((owner, name, vars(owner).get(name, _MISSING)))
            setattr(owner, name, refuser(path, path))
        for function, path in recode:
            swapped.append((function, function.__code__))
            function.__code__ = _refusing_code(
                f"{rule}: {path} is switched off while your function runs", error(path).__name__
            )
        if autograd_off:
            Variable._execution_engine = _RefusingEngine(
                engine,
                f"{rule}: autograd (torch.autograd.Variable._execution_engine.run_backward) is "
                "switched off while your function runs",
            )
        with Refuse():
            yield
    finally:
        Variable._execution_engine = engine
        for function, code in reversed(swapped):
            function.__code__ = code
        for owner, name, before in reversed(done):
            if before is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, before)


def _leaves(obj: Any) -> Iterator[Any]:
    """The objects inside nested lists, tuples and dicts (a call's arguments or result)."""
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _leaves(item)
    else:
        yield obj


def _refusing_code(message: str, error: str = "ForbiddenCall") -> types.CodeType:
    """The code of a function that raises ``error(message)`` whatever its arguments (``error``
    the name of :class:`ForbiddenCall` or of a subclass in this module).

    It becomes another function's ``__code__`` and runs with that function's globals, so it
    imports the error class rather than naming it; compiled under this file's name, so
    that the traceback's last frame outside dlbook is the student's call.
    """
    source = (
        "def refused(*args, **kwargs):\n"
        f"    raise getattr(__import__({__name__!r}, fromlist=['_']), {error!r})({message!r})\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, __file__, "exec"), namespace)
    return namespace["refused"].__code__


def _where_in_student_code(err: BaseException) -> str:
    """The last traceback frame outside dlbook, e.g. ``line 7, in mse: return x.sum()`` (for a
    :class:`ForbiddenCall`, outside torch too: the student's call, not torch's dispatch)."""
    skip = ["dlbook"] + ([f"{os.sep}torch{os.sep}"] if isinstance(err, ForbiddenCall) else [])
    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if not any(s in f.filename for s in skip)
    ]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" (line {f.lineno}, in {f.name}:{code})"


def _call(fn: Callable[..., Any], case: Case) -> Any:
    return fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))


def check(
    fn: Callable[..., Any],
    cases: Sequence[Case],
    *,
    reference: Callable[..., Any] | None = None,
    mistakes: Sequence[Mistake] = (),
    rtol: float = 1e-5,
    atol: float = 1e-8,
    timeout_s: float | None = 10.0,
    title: str | None = None,
    quiet: bool = False,
    forbidden: Sequence[str] = (),
    rule: str = "this exercise asks you to write it yourself",
    guard: Callable[[Case], AbstractContextManager] | None = None,
    autograd_off: bool = False,
) -> CheckReport:
    """Run ``fn`` on each case, compare with the reference, print specific feedback.

    Args:
        fn: the student's function.
        cases: inputs (and optionally expected outputs). Inputs are deep-copied for every call,
            so a function that modifies its arguments cannot spoil the next comparison.
        reference: computes the expected output of a case that does not give one.
        mistakes: known wrong answers; when the output equals one, its hint is printed.
        rtol, atol: tolerances of ``numpy.allclose``.
        timeout_s: time limit per case (None: no limit).
        title: what is being checked (default: the function's name).
        quiet: do not print (the report is still returned or raised).
        forbidden: dotted names of library functions switched off while ``fn`` runs (see
            :func:`switched_off`); ``rule`` is what the error says the exercise asks for. The
            reference and the mistakes run outside, with everything switched on.
        autograd_off: switch autograd off as a whole while ``fn`` runs (see
            :func:`switched_off`).
        guard: given a case, a context manager entered around ``fn``'s call on it, which may
            raise :class:`ForbiddenCall` to refuse *how* the answer is computed (e.g. a tensor
            too large for the exercise's rules).

    Returns:
        A :class:`CheckReport` when every case passes.

    Raises:
        AssertionError: a case failed; the message repeats the feedback.
        NotImplementedError: ``fn`` raised it (the exercise has not been attempted yet).
    """
    if not callable(fn):
        raise ValueError(f"check expects a function, got {type(fn).__name__}")
    if not cases:
        raise ValueError("check needs at least one case")
    title = title or getattr(fn, "__name__", "your function")
    lines = [f"Checking {title}:"]
    n_failed = 0

    def emit(line: str) -> None:
        lines.append(line)
        if not quiet:
            print(line)

    if not quiet:
        print(lines[0])
    for i, case in enumerate(cases, 1):
        label = f"case {i}" + (f" ({case.name})" if case.name else "")
        if case.expected is not _MISSING:
            expected = case.expected
        elif reference is not None:
            expected = _call(reference, case)
        else:
            raise ValueError(f"{label} has no expected value and check was given no reference")
        start = time.perf_counter()
        try:
            guarded = guard(case) if guard is not None else nullcontext()
            with (
                switched_off(forbidden, rule, autograd_off=autograd_off),
                guarded,
                _time_limit(timeout_s),
            ):
                got = _call(fn, case)
        except NotImplementedError:
            emit(
                f"  {FAIL} {label}: not implemented yet: replace `raise NotImplementedError` "
                "with your code."
            )
            raise
        except CheckTimeout as err:
            n_failed += 1
            emit(
                f"  {FAIL} {label}: {err}; look for a loop that never ends, or work that grows "
                "too fast with the input size."
            )
            continue
        except Exception as err:  # the student's code raised: say what and where
            n_failed += 1
            emit(
                f"  {FAIL} {label}: raised {type(err).__name__}: {err}{_where_in_student_code(err)}"
            )
            continue
        elapsed = time.perf_counter() - start
        ok, detail = compare(got, expected, rtol=rtol, atol=atol)
        if ok:
            emit(f"  {OK} {label}" + (f" ({elapsed:.2g} s)" if elapsed > 1 else ""))
            if len(detail) > 1:  # per-key report for dicts and sequences
                for d in detail:
                    emit(f"      {d}")
            continue
        n_failed += 1
        emit(f"  {FAIL} {label}:")
        for d in detail:
            emit(f"      {d}")
        for m in mistakes:
            try:
                wrong = _call(m.wrong, case)
            except Exception:
                continue
            if compare(got, wrong, rtol=rtol, atol=atol)[0]:
                emit(f"      known mistake, {m.name}: {m.hint}")
                break
    n = len(cases)
    if n_failed:
        emit(f"{n_failed} of {n} cases failed.")
        err = AssertionError(f"{title}: {n_failed} of {n} cases failed\n" + "\n".join(lines[1:]))
        err.report = CheckReport(title, lines, False, n, n_failed)  # type: ignore[attr-defined]
        raise err
    emit(f"All {n} cases pass. Well done.")
    return CheckReport(title, lines, True, n, 0)


# ----------------------------------------------------------------------------- one exercise


@dataclass(frozen=True)
class Exercise:
    """One auto-checked exercise: what its checker runs and the mistakes it recognises.

    ``name`` is the function the student writes, and the chapter's public checker is
    ``check_<name>``. ``cases`` makes the inputs; ``reference`` computes the expected output of a
    case that does not carry one. Each mistake's ``wrong`` takes a case's arguments, as the
    checked function does. ``rtol`` and ``atol`` are the tolerances of every comparison.
    ``forbidden`` names the library functions switched off while the student's function runs,
    ``rule`` says why, ``autograd_off`` switches autograd off as a whole (see
    :func:`switched_off`), and ``guard`` may refuse how an answer is computed (see
    :func:`check`).
    """

    name: str
    cases: Callable[[], Sequence[Case]]
    reference: Callable[..., Any] | None
    mistakes: Sequence[Mistake]
    rtol: float = 1e-5
    atol: float = 1e-8
    title: str = ""
    forbidden: tuple[str, ...] = ()
    rule: str = "this exercise asks you to write it yourself"
    guard: Callable[[Case], AbstractContextManager] | None = None
    autograd_off: bool = False

    def check(self, fn: Callable[..., Any], *, title: str | None = None) -> CheckReport:
        """Run :func:`check` on ``fn(*case.args)`` with this exercise's cases, reference,
        mistakes and tolerances; ``title`` defaults to the exercise's title, else its name."""
        if not callable(fn):
            raise ValueError(f"check_{self.name} expects a function, got {type(fn).__name__}")
        return check(
            fn,
            self.cases(),
            reference=self.reference,
            mistakes=self.mistakes,
            rtol=self.rtol,
            atol=self.atol,
            title=title or self.title or self.name,
            forbidden=self.forbidden,
            rule=self.rule,
            guard=self.guard,
            autograd_off=self.autograd_off,
        )
