"""The worker memory policy: a fixed mmap threshold, applied once, harmless to repeat."""

from __future__ import annotations

import platform

import pytest

from transforms import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_threshold_is_applied_on_glibc_and_can_be_repeated():
    assert memory.return_freed_memory_promptly() is True
    assert memory.return_freed_memory_promptly() is True
