"""glibc malloc settings for CPU sweeps.

By default glibc serves buffers above 128 KiB-32 MiB (its threshold adapts) with mmap and returns
freed heap tops to the OS, so every forward pass page-faults its activations back in; DESIGN.md
measured up to 40% of a CPU run's time there.  ``tune_glibc_malloc()`` keeps buffers up to 32 MiB
(glibc's maximum mmap threshold on 64-bit) in the heap and stops trimming it.  Same effect as
starting the process with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ set.  A no-op elsewhere.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts on 64-bit
TRIM_THRESHOLD = 2**30  # keep up to 1 GiB of freed memory at the heap top
TOP_PAD = 64 * 2**20


def tune_glibc_malloc() -> bool:
    """Apply the settings above; True if glibc took them all."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
