"""Where the package's data folders are: the source tree's, or the installed ``share/``."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = 'panoptic_ros'


def data_dir(name: str) -> Path:
    """``models``, ``config``, ...: the source tree's folder when running from a checkout, else
    ``share/panoptic_ros/<name>`` of the install (pip puts it under the interpreter's prefix,
    colcon under an ament prefix)."""
    checkout = Path(__file__).resolve().parent.parent
    here = checkout / name
    if here.is_dir() and (checkout / 'package.xml').is_file():   # not site-packages' own
        return here
    for prefix in (Path(sys.prefix), Path(sys.executable).resolve().parent.parent):
        candidate = prefix / 'share' / PACKAGE / name
        if candidate.is_dir():
            return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / name
    except Exception:  # not in a ROS environment: report the source-tree location
        return here
