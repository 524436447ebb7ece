"""DLPack per the Python array API standard, on the CPU (the GPU half with
``QUANTFORGE_GPU_TESTS=1``):

- a capsule consumed twice is refused cleanly (the first consumer renamed it ``used_dltensor``;
  the second gets an exception, and the storage is released exactly once);
- ``copy=True`` exports a copy (new memory, flagged ``IS_COPIED`` in the versioned ABI);
- ``copy=False`` where a copy would be needed, and a device quantforge cannot export to, raise
  ``BufferError``;
- tensors and capsules taken from a file that is closed later stay valid."""

from __future__ import annotations

import ctypes
import gc
import os

import numpy as np
import pytest

import quantforge

from conftest import data_dir

MODEL = data_dir() / "tiny-llama-q4_k_m.gguf"
NAME = "token_embd.weight"
IS_COPIED = 1 << 1

needs_gpu = pytest.mark.skipif(
    os.environ.get("QUANTFORGE_GPU_TESTS") != "1",
    reason="GPU tests run only with QUANTFORGE_GPU_TESTS=1 (needs torch and a CUDA device)",
)

_api = ctypes.pythonapi
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def capsule_named(capsule, name: bytes) -> bool:
    return _api.PyCapsule_IsValid(capsule, name) == 1


def versioned_flags(capsule) -> int:
    """The flags of a ``dltensor_versioned`` capsule's DLManagedTensorVersioned (after the
    version, the manager context and the deleter)."""
    ptr = _api.PyCapsule_GetPointer(capsule, b"dltensor_versioned")
    return ctypes.c_uint64.from_address(ptr + 8 + 2 * ctypes.sizeof(ctypes.c_void_p)).value


class Handing:
    """An object whose ``__dlpack__`` hands over one given capsule, as many times as asked."""

    def __init__(self, capsule, device=(1, 0)) -> None:
        self.capsule, self.device = capsule, device

    def __dlpack__(self, **_kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return self.device


def host() -> int:
    gc.collect()
    return quantforge.live_bytes()[0]


def tensor():
    with quantforge.File(MODEL) as f:
        return f.get(NAME)


def test_a_capsule_consumed_twice_is_refused_cleanly() -> None:
    start = host()
    t = tensor()
    want = np.from_dlpack(t).copy()
    for kwargs, name in (({}, b"dltensor"), ({"max_version": (1, 0)}, b"dltensor_versioned")):
        capsule = t.__dlpack__(**kwargs)
        a = np.from_dlpack(Handing(capsule))
        assert capsule_named(capsule, b"used_" + name)
        with pytest.raises((ValueError, BufferError, TypeError, RuntimeError)):
            np.from_dlpack(Handing(capsule))
        assert np.array_equal(a.view(np.uint32), want.view(np.uint32))
        del a, capsule
    n = t.nbytes
    del t
    # Released once: the consumer's deleter ran, the used capsule's destructor did nothing.
    assert host() == start, n


def test_torch_refuses_a_capsule_consumed_twice() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (torch's own check)")
    t = tensor()
    capsule = t.__dlpack__()
    a = torch.utils.dlpack.from_dlpack(capsule)
    with pytest.raises(Exception):
        torch.utils.dlpack.from_dlpack(capsule)
    assert a.shape == t.shape


def test_copy_true_copies() -> None:
    start = host()
    t = tensor()
    n = t.nbytes
    zero_copy = np.from_dlpack(t)
    assert zero_copy.ctypes.data == t.data_ptr
    for kwargs in ({}, {"max_version": (1, 0)}):
        capsule = t.__dlpack__(copy=True, **kwargs)
        if kwargs:
            assert versioned_flags(capsule) & IS_COPIED
        copy = np.from_dlpack(Handing(capsule))
        assert copy.ctypes.data != t.data_ptr
        assert np.array_equal(copy.view(np.uint32), zero_copy.view(np.uint32))
        assert host() == start + 2 * n  # the copy is memory of its own
        del copy, capsule
        assert host() == start + n
    del zero_copy, t
    assert host() == start


def test_copy_true_through_numpy() -> None:
    if tuple(int(x) for x in np.__version__.split(".")[:2]) < (2, 1):
        pytest.skip(f"numpy {np.__version__} has no copy= in from_dlpack (2.1 has)")
    t = tensor()
    a = np.from_dlpack(t, copy=True)
    assert a.ctypes.data != t.data_ptr
    assert np.array_equal(a.view(np.uint32), np.from_dlpack(t).view(np.uint32))
    b = np.from_dlpack(t, copy=False)
    assert b.ctypes.data == t.data_ptr


def test_buffer_error_where_a_copy_is_needed_or_the_device_is_unsupported() -> None:
    t = tensor()
    t.__dlpack__(dl_device=(1, 0), copy=False)  # the tensor's own device: no copy needed
    for device in ((2, 0), (10, 0), (1, 1), (99, 0)):
        for copy in (False, None, True):
            with pytest.raises(BufferError):
                t.__dlpack__(dl_device=device, copy=copy)
    with pytest.raises(ValueError):
        t.__dlpack__(dl_device=(1, -1))


def test_tensors_and_capsules_outlive_their_file() -> None:
    f = quantforge.File(MODEL)
    t = f.get(NAME)
    want = np.from_dlpack(t).copy()
    capsule = t.__dlpack__(max_version=(1, 0))
    f.close()
    del f, t
    gc.collect()
    a = np.from_dlpack(Handing(capsule))
    assert np.array_equal(a.view(np.uint32), want.view(np.uint32))


@needs_gpu
def test_dlpack_copies_on_and_from_the_gpu() -> None:
    torch = pytest.importorskip("torch")
    with quantforge.File(MODEL, device="cuda:0") as f:
        t = f.get(NAME)
    want = torch.from_dlpack(t).cpu()
    # copy=False to the CPU would need a copy: refused.
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(1, 0), copy=False)
    # copy=None to the CPU: a host copy (numpy asks for the CPU device).
    host_copy = np.from_dlpack(Handing(t.__dlpack__(dl_device=(1, 0))))
    assert np.array_equal(host_copy.view(np.uint32), want.numpy().view(np.uint32))
    # copy=True on the device: other device memory, same values.
    dev_copy = torch.utils.dlpack.from_dlpack(t.__dlpack__(copy=True, max_version=(1, 0)))
    assert dev_copy.is_cuda and dev_copy.data_ptr() != t.data_ptr
    assert torch.equal(dev_copy.cpu().view(torch.int32), want.view(torch.int32))
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(2, 1), copy=True)  # another GPU
