"""rosbag2 tools: make a camera bag with panoptic ground truth from a dataset, and replay a bag
through the node (live over DDS, or in process) to measure quality and latency.

One stage per module: :mod:`.types` (message definitions for rosbags), :mod:`.make` (dataset to
bag), :mod:`.source` (bag to frames), :mod:`.recorder` (output bag), :mod:`.offline` and
:mod:`.live` (the two ways of running the node's pipeline), :mod:`.metrics` (quality and
timing), :mod:`.report` (Markdown, JSON, plots, montage), :mod:`.run` (the commands).
"""
