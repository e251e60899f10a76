"""The Fast DDS settings panoptic_node starts with (the launch file and ``panoptic bag eval``).

The node's label images and overlay are 2-8 MB at 1024x2048. With Fast DDS's default transports
a sample that large does not fit the sender's 512 KiB shared-memory segment and goes over UDP in
64 KB fragments; a best-effort subscriber (RViz, ``ros2 topic hz``) loses the whole frame when
one fragment is lost, and reliable ones wait for resends. ``config/fastdds_node.xml`` gives the
node's participant a 64 MiB segment: subscribers on the same machine get every image through
shared memory with their own default transports, remote ones over UDP as before
(``benchmarks/dds_matrix.py``, docs/benchmarks.md). The profile only changes the node's side.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from panoptic_ros.share import data_dir

PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
TRANSPORTS_VARIABLE = 'FASTDDS_BUILTIN_TRANSPORTS'
SEGMENT_MIB = 64
SHM_DIR = Path('/dev/shm')


def default_profile() -> Path | None:
    """``config/fastdds_node.xml`` of the source tree or the install, if there."""
    path = data_dir('config') / 'fastdds_node.xml'
    return path if path.is_file() else None


def node_environment(profile: str, environ=os.environ) -> tuple[dict[str, str], str | None]:
    """Environment variables for the node's process, and a warning when the profile is not
    applied.

    Args:
        profile: ``'default'`` (the shipped profile), ``'none'`` or a path to a Fast DDS XML
            file.
        environ: the environment the node inherits: a ``FASTDDS_DEFAULT_PROFILES_FILE`` or
            ``FASTDDS_BUILTIN_TRANSPORTS`` set there is the user's choice and wins.
    """
    if profile == 'none':
        return {}, None
    if PROFILE_VARIABLE in environ or TRANSPORTS_VARIABLE in environ:
        return {}, None
    if profile != 'default':
        if not Path(profile).is_file():
            raise FileNotFoundError(f'dds_profile {profile}: no such file (a Fast DDS XML '
                                    "profile, 'default' or 'none' expected)")
        return {PROFILE_VARIABLE: str(Path(profile).resolve())}, None
    path = default_profile()
    if path is None:
        return {}, 'config/fastdds_node.xml is not installed: Fast DDS default transports'
    free = shutil.disk_usage(SHM_DIR).free if SHM_DIR.is_dir() else 0
    if free < 2 * SEGMENT_MIB * 2 ** 20:
        return {}, (f'{SHM_DIR} has {free / 2 ** 20:.0f} MiB free, under twice the node\'s '
                    f'{SEGMENT_MIB} MiB shared-memory segment: Fast DDS default transports '
                    '(best-effort subscribers may lose large images; give the container more '
                    'shared memory, e.g. docker --shm-size=512m)')
    return {PROFILE_VARIABLE: str(path)}, None
