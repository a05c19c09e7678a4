"""Reads a PyTorch ``state_dict`` saved in the legacy (non-zip) format, without torch.

The legacy format is a few pickles followed by raw tensor storages: the magic number, the
protocol version, system information, the ``state_dict`` pickle (whose tensors point at
storages by key), the list of storage keys in file order, then for each key an int64 element
count and the raw little-endian elements. The unpickler below resolves only the handful of
globals such a file needs, so a checkpoint cannot run code while it is read.
"""

from __future__ import annotations

import collections
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

__all__ = ["CheckpointError", "read_legacy_state_dict"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state_dict this reader can read."""


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


class _TensorRef:
    """A tensor waiting for its storage's bytes: (storage key, offset, size, stride)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *_):
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, saved_id):
        # ('storage', storage type, key, location, element count, view metadata)
        kind, storage_type, key, _location, _numel, _view = saved_id
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported persistent id {saved_id!r}")
        return key, storage_type.dtype


def read_legacy_state_dict(file: BinaryIO) -> dict[str, np.ndarray]:
    """``{parameter name: array}`` from an open legacy ``.pth`` file."""
    try:
        magic = pickle.load(file)
        protocol = pickle.load(file)
        pickle.load(file)  # system information: endianness and type sizes
    except Exception as exc:
        raise CheckpointError(f"not a legacy PyTorch checkpoint: {exc}") from exc
    if magic != _MAGIC_NUMBER or protocol != _PROTOCOL_VERSION:
        raise CheckpointError("not a legacy PyTorch checkpoint (wrong magic number or protocol)")
    state = _RestrictedUnpickler(file).load()
    keys = pickle.load(file)
    storages: dict[str, np.ndarray] = {}
    dtypes = {ref.storage[0]: ref.storage[1] for ref in state.values()}
    for key in keys:
        (count,) = struct.unpack("<q", file.read(8))
        dtype = dtypes.get(key, np.dtype(np.uint8))
        raw = file.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise CheckpointError(f"checkpoint is truncated in storage {key}")
        storages[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    arrays: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        flat = storages[ref.storage[0]]
        itemsize = flat.dtype.itemsize
        arrays[name] = np.lib.stride_tricks.as_strided(
            flat[ref.offset :],
            shape=ref.size,
            strides=tuple(s * itemsize for s in ref.stride),
        ).copy()
    return arrays
