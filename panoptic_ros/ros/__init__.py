"""The ROS 2 layer: image conversion, parameters, diagnostics, output messages, the node."""
