"""panoptic_ros: real-time panoptic segmentation for ROS 2.

Importing this package is cheap: the heavy parts (torch, rclpy, OpenCV) are imported by the
modules that need them.
"""

__version__ = '0.1.0'
