"""The heap policy of our processes (:mod:`panoptic_ros.heap`), in fresh processes."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(getattr(ctypes.CDLL(None), 'mallopt', None) is None,
                                reason='the C library has no mallopt (not glibc)')

# Minor page faults per frame of a loop that makes a 64 MiB and an 8 MiB tensor and drops both,
# as the network's activations are (torch's CPU allocator), after the policy or without it.
_FAULTS = '''
import resource, sys
import torch
from panoptic_ros.heap import keep_freed_memory
in_force = keep_freed_memory() if sys.argv[1] == 'policy' else False
def frame():
    activation = torch.ones(16 << 20)
    output = torch.ones(2 << 20)
    del activation, output
for _ in range(5):          # the heap settles into its working set
    frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    frame()
print(in_force, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
'''


def _faults(mode: str, **env) -> tuple[str, int]:
    out = subprocess.run([sys.executable, '-c', _FAULTS, mode], capture_output=True,
                         text=True, timeout=60, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    in_force, faults = out.stdout.split()
    return in_force, int(faults)


def test_freed_buffers_are_reused_not_faulted_in_again():
    """glibc's default maps the 72 MiB afresh each frame (about 18k faults of 4 KiB pages);
    with the policy, once the heap has grown to the working set, frames reuse its memory."""
    assert _faults('default')[1] > 10_000
    in_force, faults = _faults('policy')
    assert in_force == 'True' and faults < 100


def test_the_users_own_malloc_tunables_win():
    env = {'GLIBC_TUNABLES': 'glibc.malloc.mmap_threshold=131072'}
    in_force, faults = _faults('policy', **env)
    assert in_force == 'False' and faults > 10_000

