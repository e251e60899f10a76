"""The tests run against the installed package, not the source tree (see pytest.ini).

``python -m pytest`` run in the repository puts the repository root on ``sys.path``, and so
does ``python -c``/``-m`` for the Python processes that tests start there: drop the root from
this process's path before any test module imports ``panoptic_ros`` and from ``PYTHONPATH``,
and set ``PYTHONSAFEPATH`` (Python >= 3.11) so that child processes do not add their working
directory either. test_packaging checks both.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or os.getcwd()).resolve() == ROOT
    except OSError:
        return False


sys.path[:] = [p for p in sys.path if not _is_root(p)]
if 'PYTHONPATH' in os.environ:
    os.environ['PYTHONPATH'] = os.pathsep.join(
        p for p in os.environ['PYTHONPATH'].split(os.pathsep) if p and not _is_root(p))
os.environ['PYTHONSAFEPATH'] = '1'


@pytest.fixture(scope='session')
def samples(tmp_path_factory):
    """Four synthetic street scenes at 256x512 (val, seed 5) as samples, rendered once for the
    architecture tests that score oracle and model outputs on them; a module may define its
    own ``samples``."""
    from panoptic_ros.datasets.cityscapes import CityscapesDataset
    from panoptic_ros.synth.writer import write_dataset

    root = tmp_path_factory.mktemp('samples_256x512')
    write_dataset(root, 'val', num=4, height=256, width=512, seed=5, workers=1, progress=False)
    ds = CityscapesDataset(root, 'val')
    return [ds[i] for i in range(len(ds))]
