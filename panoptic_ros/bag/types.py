"""Message definitions for rosbags: the ROS 2 standard types plus ``panoptic_ros_msgs``, read
from the ``.msg`` files installed with the message package (so an output bag carries the exact
definitions a ``ros2 bag`` or Foxglove user needs)."""

from __future__ import annotations

import functools
from pathlib import Path

from panoptic_ros.errors import PanopticError

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
SEGMENTS = 'panoptic_ros_msgs/msg/PanopticSegmentArray'
OUTPUT_TYPES = {'segments': SEGMENTS, 'panoptic': IMAGE, 'semantic': IMAGE, 'overlay': IMAGE}


def _msg_dir() -> Path:
    """``share/panoptic_ros_msgs/msg`` of the install the Python package comes from."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory('panoptic_ros_msgs')) / 'msg'
    except (ImportError, LookupError, ValueError, OSError):  # no ament index: a pip install
        pass
    import panoptic_ros_msgs

    # <prefix>/lib/pythonX.Y/site-packages/panoptic_ros_msgs/__init__.py
    prefix = Path(panoptic_ros_msgs.__file__).resolve().parents[4]
    return prefix / 'share' / 'panoptic_ros_msgs' / 'msg'


@functools.cache
def typestore():
    """A rosbags ``Typestore`` for ROS 2 Kilted with our messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    folder = _msg_dir()
    files = sorted(folder.glob('*.msg'))
    if not files:
        raise PanopticError(f'no panoptic_ros_msgs definitions in {folder}: is the message '
                            'package installed (make install, or colcon build)?')
    types = {}
    for f in files:
        types.update(get_types_from_msg(f.read_text(), f'panoptic_ros_msgs/msg/{f.stem}'))
    store.register(types)
    return store
