"""``safe_open(...).get_slice(name)``: safetensors' slice interface over a GGUF tensor.

A slice reads only the bytes it needs: the rows it covers, and in each row the blocks that
cover its columns. Column bounds that do not fall on block boundaries are expanded to the
covering blocks and trimmed after dequantization (in host memory by quantforge, on a device
with the framework's own ops). With ``dtype="native"`` the result is blocks, and a slice that
cuts a block is refused with the block size in the message.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Tuple

from . import _native

_DTYPE_STRINGS = {"f32": "F32", "f16": "F16", "bf16": "BF16", "native": "U8"}


def _bounds(key: Any, shape: Tuple[int, ...]) -> List[Tuple[int, int, bool]]:
    """``(start, stop, is_integer)`` for every dimension of ``shape`` selected by ``key``
    (slices of step 1, integers, one ``...``)."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices for a tensor of {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape):
        if isinstance(k, bool) or not isinstance(k, (int, slice)):
            raise TypeError(f"only slices of step 1, integers and '...' are supported, not {k!r}")
        if isinstance(k, int):
            i = k + n if k < 0 else k
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for a dimension of size {n}")
            out.append((i, i + 1, True))
            continue
        start, stop, step = k.indices(n)
        if step != 1:
            raise ValueError(f"slices of step {step} are not supported (only step 1)")
        out.append((start, max(start, stop), False))
    return out


class Slice:
    """A tensor of a :class:`~quantforge.safe_open` file, to be indexed (as
    ``safetensors``' ``PySafeSlice``): ``get_shape()``, ``get_dtype()`` and ``[...]``."""

    def __init__(self, f: Any, name: str) -> None:
        self._f, self._name = f, name
        self._type = f.get_tensor_type(name)
        self._values_shape = tuple(f.get_tensor_shape(name))
        _, _, self._be, self._bb, _ = _native.ggml_type_info(self._type)

    def _native(self) -> bool:
        return self._f._file.dtype == "native" and self._type not in ("I8", "I16", "I32", "I64")

    def get_shape(self) -> List[int]:
        """The shape a whole ``[...]`` gives: the values' shape, or for native blocks
        ``(rows, row_bytes)``."""
        if not self._native():
            return list(self._values_shape)
        rows = math.prod(self._values_shape[:-1])
        return [rows, self._values_shape[-1] // self._be * self._bb]

    def get_dtype(self) -> str:
        """safetensors' dtype string of what ``[...]`` gives: ``"F32"``, ``"F16"``, ``"BF16"``,
        ``"U8"`` for native blocks, or an integer tensor's own type."""
        if self._type in ("I8", "I16", "I32", "I64"):
            return self._type
        return _DTYPE_STRINGS[self._f._file.dtype]

    def __getitem__(self, key: Any) -> Any:
        rows, cols, finish = self._plan(key)
        return finish(_native._get_region(self._f._file, self._name, rows, cols))

    def _plan(self, key: Any) -> Tuple[Tuple[int, int], Tuple[int, int], Callable[[Any], Any]]:
        """What ``[key]`` reads and makes: the region's rows (flattened over every dimension but
        the last) and values of each row to load natively, and the function that turns the
        loaded region into the result (the trim of covering blocks on a device, the indexed
        shape). :func:`_tp.shard_all` loads many such regions in one pipelined load."""
        shape = tuple(self.get_shape())
        dims = _bounds(key, shape)
        *lead, (c0, c1, c_int) = dims
        # Rows the native call reads: the first dimension's range times every inner row (an
        # inner dimension's own range is cut from them afterwards).
        inner = math.prod(shape[1:-1])
        r0, r1 = (lead[0][0] * inner, lead[0][1] * inner) if lead else (0, 1)
        v0, v1 = self._value_columns(c0, c1, shape[-1])
        (a, b), trim = self._covering(v0, v1)

        def finish(region: Any) -> Any:
            out = trim(region)
            if not lead:
                out = out.reshape(out.shape[-1])
                return out[0] if c_int else out
            out = out.reshape(lead[0][1] - lead[0][0], *shape[1:-1], out.shape[-1])
            index = [0 if lead[0][2] else slice(None)]
            index += [x if is_int else slice(x, y) for x, y, is_int in lead[1:]]
            index.append(0 if c_int else slice(None))
            return out[tuple(index)]

        return (r0, r1), (a, b), finish

    def bytes_read(self, dim0: Tuple[int, int], cols: Tuple[int, int]) -> int:
        """File bytes that indexing ``[dim0[0]:dim0[1], ..., cols[0]:cols[1]]`` reads."""
        shape = tuple(self.get_shape())
        inner = math.prod(shape[1:-1])
        rows = (dim0[0] * inner, dim0[1] * inner) if len(shape) > 1 else (0, 1)
        v0, v1 = self._value_columns(cols[0], cols[1], shape[-1])
        return _native._region_bytes(self._f._file, self._name, rows, (v0, v1))

    def _value_columns(self, c0: int, c1: int, width: int) -> Tuple[int, int]:
        """The values of a row that columns ``c0..c1`` of the result are (for native blocks the
        columns are bytes, which must fall on block boundaries)."""
        if not self._native():
            return c0, c1
        if c0 % self._bb or (c1 % self._bb and c1 != width):
            raise ValueError(
                f"{self._name}: bytes {c0}..{c1} of a row cut {self._type} blocks of {self._bb} "
                f"bytes; slice native blocks at multiples of {self._bb}"
            )
        return c0 // self._bb * self._be, c1 // self._bb * self._be

    def _covering(self, v0: int, v1: int) -> Tuple[Tuple[int, int], Callable[[Any], Any]]:
        """The values of each row to load for values ``v0..v1``, and the function that turns
        the loaded region (in the native module's type) into the file's framework with just
        those values: on a device, columns that cut blocks load the covering blocks and are
        trimmed with the framework's ops (in host memory quantforge trims them itself)."""
        from . import _convert

        fw = self._f._framework
        on_device = self._f.device != "cpu"
        cut = (v0 % self._be or v1 % self._be and v1 != self._values_shape[-1]) and not self._native()
        if not (on_device and cut):
            return (v0, v1), lambda region: _convert(region, fw)
        a, b = v0 // self._be * self._be, min(-(-v1 // self._be) * self._be, self._values_shape[-1])
        if fw != "pt":
            raise ValueError(
                f"{self._name}: columns {v0}..{v1} cut {self._type} blocks of {self._be} values; on a "
                f"device use framework='pt', or slice at multiples of {self._be}"
            )

        def trim(region: Any) -> Any:
            t = _convert(region, fw)
            return t.reshape(-1, t.shape[-1])[:, v0 - a : v1 - a].contiguous()

        return (a, b), trim
