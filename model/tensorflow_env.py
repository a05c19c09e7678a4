"""TensorFlow's process settings, which must be in the environment before it is imported.

On a machine without a GPU, TensorFlow 2.21 still probes for CUDA when it is imported and logs
the failure as errors (``failed call to cuInit: INTERNAL: CUDA error ...`` from
``cuda_platform.cc``, ``cuda_executor``), which read to a user as if the job broke. Of the
values of ``TF_CPP_MIN_LOG_LEVEL`` only 3 silences them (2 keeps errors). So where no GPU is
visible and the user has not chosen a level, the level is 3; where a GPU is, 2, so that its
real errors show. A level the user set always wins.

Worker processes that a job starts (Beam's multi-processing DirectRunner, portable runners'
process workers) inherit the level from the launching process; a worker started elsewhere
decides for itself when it imports the model.
"""

from __future__ import annotations

import glob
import os
from types import ModuleType

__all__ = ["LOG_LEVEL", "configure_tensorflow_logging", "gpu_visible", "import_tensorflow"]

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# NVIDIA's device nodes (/dev/nvidiactl and /dev/nvidia-uvm exist without a GPU too); WSL's GPU.
_GPU_DEVICES = ("/dev/nvidia[0-9]*", "/dev/dxg")
_WITHOUT_GPU = "3"  # fatal messages only: the CUDA probe's errors go
_WITH_GPU = "2"  # warnings and information go, errors stay


def gpu_visible() -> bool:
    """Whether this process can see a GPU: a GPU device node exists and
    ``CUDA_VISIBLE_DEVICES`` does not hide every device."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices is not None and devices.strip() in ("", "-1"):
        return False
    return any(glob.glob(pattern) for pattern in _GPU_DEVICES)


def _user_log_level() -> str | None:
    """The level in the environment this process started with.

    ``os.environ`` cannot tell: the ``model`` package sets a default level when it is first
    imported, before this module runs. On Linux ``/proc/self/environ`` still holds the
    environment as the process received it; elsewhere the current value stands in for it.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return os.environ.get(LOG_LEVEL)
    prefix = f"{LOG_LEVEL}=".encode()
    for entry in entries:
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def configure_tensorflow_logging() -> str:
    """Sets ``TF_CPP_MIN_LOG_LEVEL`` for a TensorFlow imported later; returns the level.

    TensorFlow reads it once, on import: a process that has imported it already keeps what it
    had.
    """
    level = _user_log_level()
    if level is None:
        level = _WITH_GPU if gpu_visible() else _WITHOUT_GPU
    os.environ[LOG_LEVEL] = level
    return level


def import_tensorflow() -> ModuleType:
    """``tensorflow``, imported with the log level above."""
    configure_tensorflow_logging()
    import tensorflow

    return tensorflow
