"""A strict stand-in for CuPy, so the numpy core's device path runs (and is held to CuPy's rules)
without a GPU.

Its arrays hold NumPy arrays but behave like device arrays where it bites:
- no implicit way back to the host: `np.asarray(a)`, any NumPy function or ufunc on `a`,
  `float(a)`, `int(a)`, `bool(a)`, `a.item()`, `a.tolist()`, iteration, ... raise HostRoundTrip
  (on a GPU each is a synchronizing copy, per call);
- no host arrays mixed in: a NumPy array as an operand or index raises (CuPy raises TypeError);
- no boolean-mask indexing (it needs the mask's count on the host);
- reductions return 0-d arrays, not scalars (as CuPy).
The only ways across are the module's `asarray` (host → device) and `asnumpy` (device → host),
which `toolkit.ml.nn.device.Device` calls at the edges it declares; the module counts them, so a
test can show the transfers per fit do not grow with the number of batches.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from toolkit.ml.nn.device import Device


class HostRoundTrip(TypeError):
    """A device array was asked for its values on the host outside a declared edge."""


def _refuse(what: str):
    def method(self, *args, **kwargs):
        raise HostRoundTrip(f"{what} of a device array: a host round trip (use Device.to_host at an edge)")

    return method


class StrictArray:
    __slots__ = ("_a",)

    def __init__(self, array: np.ndarray) -> None:
        self._a = array

    # --- what a device array never does implicitly
    __array__ = _refuse("np.asarray()")
    __float__ = _refuse("float()")
    __int__ = _refuse("int()")
    __index__ = _refuse("operator.index()")
    __complex__ = _refuse("complex()")
    __bool__ = _refuse("bool()")
    __iter__ = _refuse("iteration")
    item = _refuse(".item()")
    tolist = _refuse(".tolist()")
    tobytes = _refuse(".tobytes()")

    def __array_function__(self, func, types, args, kwargs):
        raise HostRoundTrip(f"np.{func.__name__}() on a device array: a host round trip (use the device's array module)")

    def __array_ufunc__(self, ufunc, method, *args, **kwargs):  # also what NumPy arrays' operators call
        raise HostRoundTrip(f"NumPy ufunc {ufunc.__name__} on a device array: a host round trip (use the device's array module)")

    # --- metadata (no values)
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: StrictArray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"StrictArray(shape={self.shape}, dtype={self.dtype})"

    # --- indexing
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value) -> None:
        self._a[_index(key)] = _operand(value)

    # --- methods that stay on the device
    def reshape(self, *shape, **kw):
        return StrictArray(self._a.reshape(*shape, **kw))

    def astype(self, dtype, **kw):
        return StrictArray(self._a.astype(dtype, **kw))

    def copy(self):
        return StrictArray(self._a.copy())

    def fill(self, value) -> None:
        self._a.fill(_operand(value))

    def ravel(self):
        return StrictArray(self._a.ravel())

    def transpose(self, *axes):
        return StrictArray(self._a.transpose(*axes))

    def sum(self, *a, **kw):
        return _wrap(self._a.sum(*a, **_unwrap_kwargs(kw)))

    def mean(self, *a, **kw):
        return _wrap(self._a.mean(*a, **_unwrap_kwargs(kw)))

    def max(self, *a, **kw):
        return _wrap(self._a.max(*a, **_unwrap_kwargs(kw)))

    def min(self, *a, **kw):
        return _wrap(self._a.min(*a, **_unwrap_kwargs(kw)))

    def argmax(self, *a, **kw):
        return _wrap(self._a.argmax(*a, **_unwrap_kwargs(kw)))


def _binary(name: str):
    def method(self, other):
        result = getattr(self._a, name)(_operand(other))
        return NotImplemented if result is NotImplemented else _wrap(result)

    return method


def _inplace(name: str):
    def method(self, other):
        getattr(self._a, name)(_operand(other))
        return self

    return method


for _op in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod"):
    setattr(StrictArray, f"__{_op}__", _binary(f"__{_op}__"))
    setattr(StrictArray, f"__r{_op}__", _binary(f"__r{_op}__"))
    setattr(StrictArray, f"__i{_op}__", _inplace(f"__i{_op}__"))
for _op in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(StrictArray, f"__{_op}__", _binary(f"__{_op}__"))
StrictArray.__neg__ = lambda self: StrictArray(-self._a)
StrictArray.__abs__ = lambda self: StrictArray(abs(self._a))
StrictArray.__hash__ = None


def _wrap(value):
    if isinstance(value, np.ndarray):
        return StrictArray(value)
    if isinstance(value, np.generic):  # CuPy answers reductions and element reads with 0-d arrays
        return StrictArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _operand(value):
    """What a device operation may take: device arrays and host scalars, never host arrays."""
    if isinstance(value, StrictArray):
        return value._a
    if isinstance(value, np.ndarray):
        raise HostRoundTrip(f"a host array {value.shape} {value.dtype} mixed into a device operation "
                            "(upload it with Device.to_device at an edge)")
    if isinstance(value, (list, tuple)):
        return type(value)(_operand(v) for v in value)
    return value


def _index(key):
    key = _operand(key)
    for part in key if isinstance(key, tuple) else (key,):
        if isinstance(part, np.ndarray) and part.dtype == bool:
            raise HostRoundTrip("boolean-mask indexing of a device array: its size needs the mask's count on the host")
    return key


def _unwrap_kwargs(kwargs: dict) -> dict:
    return {k: _operand(v) for k, v in kwargs.items()}


class StrictArrayModule(types.ModuleType):
    """NumPy's functions over StrictArrays, plus CuPy's two edges (`asarray`, `asnumpy`), counted."""

    def __init__(self) -> None:
        super().__init__("strict_array_module")
        self.uploads = 0
        self.downloads = 0

    def asarray(self, value: Any, dtype=None) -> StrictArray:
        if isinstance(value, StrictArray):
            return value if dtype is None else value.astype(dtype)
        self.uploads += 1
        return StrictArray(np.array(value, dtype=dtype, copy=True))

    def asnumpy(self, value: StrictArray) -> np.ndarray:
        if not isinstance(value, StrictArray):
            raise TypeError(f"asnumpy takes a device array, not {type(value).__name__}")
        self.downloads += 1
        return np.array(value._a, copy=True)

    def __getattr__(self, name: str):
        attribute = getattr(np, name)
        if not callable(attribute) or isinstance(attribute, type):  # dtypes, constants, scalar types pass through
            return attribute

        def on_device(*args, **kwargs):
            return _wrap(attribute(*_operand(list(args)), **_unwrap_kwargs(kwargs)))

        on_device.__name__ = name
        return on_device


def strict_device(budget: int | None = None) -> Device:
    """A Device on a fresh StrictArrayModule (fresh transfer counters)."""
    return Device(StrictArrayModule(), "gpu", {"name": "strict stand-in (NumPy behind CuPy's rules)"}, memory_budget=budget)
