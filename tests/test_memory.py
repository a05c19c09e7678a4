"""The heap trimmer: glibc's malloc_trim, called at most once per interval."""

from __future__ import annotations

import platform

import pytest

from transforms.memory import HeapTrimmer


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trims_on_glibc():
    trimmer = HeapTrimmer(interval_secs=0)
    assert trimmer.available
    assert trimmer.maybe_trim() is True


def test_trims_at_most_once_per_interval():
    trimmer = HeapTrimmer(interval_secs=3600)
    calls = []
    trimmer._trim = calls.append
    trimmer._last -= 3600  # the interval has passed once
    assert trimmer.maybe_trim() is True
    assert [trimmer.maybe_trim() for _ in range(5)] == [False] * 5
    assert calls == [0]


def test_does_nothing_without_glibc():
    trimmer = HeapTrimmer(interval_secs=0)
    trimmer._trim = None
    assert trimmer.maybe_trim() is False
