"""The C heap of our processes: large buffers reused from frame to frame, not remapped.

Every frame allocates and frees the same large buffers: the network's activations (tens of
MiB at 512x1024), images and label maps. With glibc's defaults every block over its mmap
threshold (128 KiB, adapting up to 32 MiB) gets its own ``mmap``, is faulted in and zeroed by
the kernel page by page when first written, and unmapped when freed, so each frame pays for
all of its memory again: 66-120 thousand page faults per frame of the default model at
1024x2048, a third to half of its CPU inference time (docs/benchmarks.md, "The heap
policy"). :func:`keep_freed_memory` makes ``malloc`` serve every block from its heap and keep
what is freed for the next frame.

Memory then stays at the process's working set instead of falling between frames, and
returns to the system with :func:`return_freed_memory` (the node calls it when it releases a
model) or when more than 256 MiB at the top of the heap is free. Other C libraries (musl,
macOS) have neither call, and both are no-ops there.
"""

from __future__ import annotations

import ctypes
import os

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
TRIM_THRESHOLD = 256 << 20


def _libc_function(name: str):
    return getattr(ctypes.CDLL(None), name, None)


def keep_freed_memory() -> bool:
    """Serve every ``malloc`` from the heap (no block gets its own ``mmap``) and return the
    heap's top to the system only beyond :data:`TRIM_THRESHOLD` free.

    Call it early in a process that handles frame after frame (the node, the command line
    tool, pool workers). Returns True when the policy is in force; False, changing nothing,
    where the C library has no ``mallopt`` or the environment already sets glibc's malloc
    tunables (``GLIBC_TUNABLES`` with ``glibc.malloc``): the user's choice wins.
    """
    if 'glibc.malloc.' in os.environ.get('GLIBC_TUNABLES', ''):
        return False
    mallopt = _libc_function('mallopt')
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def return_freed_memory() -> None:
    """Give the free pages of the heap back to the system (glibc ``malloc_trim``): after a
    model is released, a node would otherwise go on holding its memory."""
    trim = _libc_function('malloc_trim')
    if trim is not None:
        trim(0)
