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
