"""The node's parameters: one table with type, default, range, description and when a change
takes effect. ``config/panoptic.yaml`` holds the same defaults for launch files.

``when`` is ``runtime`` (applied to the next frame), ``configure`` (read by ``on_configure``:
changing it on a configured node is refused with the way to do it) or ``start`` (read once when
the process starts).
"""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)

OUTPUTS = ('semantic', 'instance', 'panoptic', 'overlay', 'segments')


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    description: str
    when: str = 'runtime'
    range: tuple | None = None           # (min, max) inclusive, ints or floats
    choices: tuple[str, ...] | None = None


PARAMS = (
    # model and engine
    Param('model', '', 'An architecture (dense_detections, ...: its bundled model) or the stem '
          'of a file in share/panoptic_ros/models; empty: the bundled dense_detections model. '
          'Ignored when weights is set.', 'configure'),
    Param('weights', '', 'Path of a .safetensors weights file with its model card; empty: use '
          'model.', 'configure'),
    Param('engine', 'torch', 'Inference engine.', 'configure',
          choices=('torch', 'onnxruntime', 'tensorrt')),
    Param('device', 'auto', "'auto' (cuda when available, else cpu), 'cpu', 'cuda' or "
          "'cuda:N'.", 'configure'),
    Param('precision', 'fp16', 'fp16 or fp32 (fp16 applies on GPU only).', 'configure',
          choices=('fp16', 'fp32')),
    Param('input_height', 0, 'Network input height in pixels; 0: the model card\'s. Multiple '
          'of 128.', 'configure', range=(0, 4096)),
    Param('input_width', 0, 'Network input width in pixels; 0: the model card\'s. Multiple of '
          '128.', 'configure', range=(0, 8192)),
    Param('warmup_frames', 2, 'Forward passes on a blank image during configure.', 'configure',
          range=(0, 20)),
    Param('cache_dir', '', 'Where ONNX files and TensorRT engines are cached; empty: '
          '~/.cache/panoptic_ros.', 'configure'),
    # post-processing (negative: the model card's value)
    Param('score_threshold', -1.0, 'Minimum instance score; negative: the model card\'s.',
          range=(-1.0, 1.0)),
    Param('mask_threshold', -1.0, 'Mask probability threshold (sigma of dense detections); '
          'negative: the model card\'s.', range=(-1.0, 1.0)),
    Param('overlap_threshold', -1.0, 'Drop an instance whose mask is covered more than this by '
          'higher-scoring ones; negative: the model card\'s.', range=(-1.0, 1.0)),
    Param('min_stuff_area', -1, 'Stuff regions smaller than this (pixels of the input image) '
          'become void; negative: the model card\'s.', range=(-1, 1 << 24)),
    Param('fusion_stride', -1, 'Grid of the instance masks and the panoptic fusion as a stride '
          "of the network input: 4 (the heads' own grid, fastest), 2 or 1 (bilinearly "
          "upsampled); negative: the model card's. Dense detections only (docs/benchmarks.md, "
          'node overhead: the trade-off measured).', range=(-1, 4)),
    Param('label_divisor', 1000, "panoptic id = class_id * label_divisor + instance_id.",
          range=(256, 65536)),
    # outputs
    Param('outputs', list(OUTPUTS), f'Outputs to publish, any of {", ".join(OUTPUTS)}. Label '
          'images and the overlay are only made while someone subscribes to them.',
          'configure'),
    Param('overlay_alpha', 0.6, "Weight of the label colours over the camera image's "
          'brightness in the overlay (void keeps the camera image).', range=(0.0, 1.0)),
    Param('overlay_boundaries', True, 'Outline instances in the overlay (white or black, '
          'thickness scaled with the image).'),
    Param('overlay_labels', False, 'Write class names on instances in the overlay.'),
    # input
    Param('input_transport', 'raw', "'raw': sensor_msgs/Image on 'image'; 'compressed': "
          "sensor_msgs/CompressedImage (jpeg, png) on 'image/compressed'.", 'configure',
          choices=('raw', 'compressed')),
    Param('input_qos.reliability', 'reliable', "Input QoS reliability. 'reliable' is the safe "
          'default for large images over Fast DDS (best effort can lose every fragmented '
          "frame); use 'best_effort' for sensor-data publishers that only offer it.",
          'configure', choices=('reliable', 'best_effort')),
    Param('input_qos.depth', 2, 'Input QoS history depth.', 'configure', range=(1, 100)),
    Param('output_qos.depth', 5, 'History depth of the (reliable) output publishers: how many '
          'frames a subscriber may fall behind, or wait for a lost fragment to be resent, '
          'before it misses one. Depth 1 lost whole frames under CPU load.', 'configure',
          range=(1, 100)),
    Param('queue_size', 1, 'Frames waiting for the worker; when full the oldest is dropped, so '
          'the newest frame always wins.', 'configure', range=(1, 30)),
    Param('max_image_side', 16384, 'Images with a larger side are rejected as corrupt.',
          range=(16, 65536)),
    # tracking
    Param('tracking.enabled', True, "Give every object a track id that stays with it from "
          "frame to frame ('track_id' of panoptic/segments; 0 for stuff and when off).",
          'configure'),
    Param('tracking.iou_threshold', 0.2, 'Mask IoU (same class, post-processing grid) an '
          'object needs with a track to continue it.', 'configure', range=(0.01, 1.0)),
    Param('tracking.max_age', 5, 'Frames a track survives without a match (occlusions, '
          'missed detections).', 'configure', range=(0, 1000)),
    Param('tracking.predict_motion', True, "Move a track's mask by its constant-velocity "
          'prediction before matching (fast or near objects).', 'configure'),
    Param('tracking.max_gap_s', 1.0, 'Silence between two frames (header stamps, or arrival '
          'times when stamps are zero) after which the tracks end.', range=(0.0, 1e6)),
    Param('tracking.instance_ids', 'frame', "Pixel values of panoptic/instance: 'frame', the "
          "per-frame ids (segments' instance_id); 'track', the track ids (segments' track_id, "
          'wrapped into 1..65535). Needs tracking.enabled.', 'configure',
          choices=('frame', 'track')),
    # diagnostics
    Param('diagnostics.period', 1.0, 'Seconds between /diagnostics reports.', 'configure',
          range=(0.1, 60.0)),
    Param('diagnostics.window', 100, 'Frames the rates and percentiles are computed over.',
          'configure', range=(2, 10000)),
    Param('diagnostics.warn_latency_ms', 500.0, 'WARN when the p95 of reception-to-publish '
          'time exceeds this.', range=(0.0, 1e6)),
    Param('diagnostics.error_latency_ms', 2000.0, 'ERROR when that p95 exceeds this.',
          range=(0.0, 1e6)),
    Param('diagnostics.warn_age_ms', 1000.0, 'WARN when the p95 of output time minus input '
          'stamp exceeds this.', range=(0.0, 1e6)),
    Param('diagnostics.warn_drop_ratio', 0.5, 'WARN when more than this fraction of received '
          'frames was dropped.', range=(0.0, 1.0)),
    Param('diagnostics.stale_s', 5.0, 'ERROR when images arrive but nothing was published for '
          'this long.', range=(0.1, 3600.0)),
    # process
    Param('autostart', False, 'Configure and activate at start (for simple launches).', 'start'),
)
BY_NAME = {p.name: p for p in PARAMS}


def descriptor(p: Param) -> ParameterDescriptor:
    """rclpy descriptor: rclpy itself then rejects values out of range or of another type."""
    extra = f'One of: {", ".join(p.choices)}.' if p.choices else ''
    when = {'runtime': 'Takes effect on the next frame.',
            'configure': 'Read on configure: change it while unconfigured.',
            'start': 'Read when the node starts.'}[p.when]
    d = ParameterDescriptor(name=p.name, description=f'{p.description} {when}',
                            additional_constraints=extra, read_only=p.when == 'start',
                            type=_TYPES[type(p.default)])
    if p.range and isinstance(p.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                     to_value=float(p.range[1]))]
    elif p.range:
        d.integer_range = [IntegerRange(from_value=p.range[0], to_value=p.range[1])]
    return d


_TYPES = {str: ParameterType.PARAMETER_STRING, bool: ParameterType.PARAMETER_BOOL,
          int: ParameterType.PARAMETER_INTEGER, float: ParameterType.PARAMETER_DOUBLE,
          list: ParameterType.PARAMETER_STRING_ARRAY}


def check(name: str, value, configured: bool) -> str | None:
    """Why a new value is refused, or None. Types and ranges are checked by rclpy."""
    p = BY_NAME.get(name)
    if p is None:
        return None
    if p.when == 'configure' and configured:
        return (f'{name} is read on configure: deactivate and clean up the node (ros2 '
                f'lifecycle set <node> deactivate, then cleanup), set {name}, and configure '
                'again')
    if p.choices and value not in p.choices:
        return f'{name} must be one of {list(p.choices)}, got {value!r}'
    if name == 'outputs':
        unknown = sorted(set(value) - set(OUTPUTS))
        if unknown:
            return f'outputs: unknown {unknown}; expected any of {list(OUTPUTS)}'
    if name in ('input_height', 'input_width') and value % 128:
        return f'{name} must be 0 or a multiple of 128, got {value}'
    if name == 'fusion_stride' and value not in (-1, 1, 2, 4):
        return f'fusion_stride must be 1, 2 or 4 (or negative: the card\'s), got {value}'
    if name == 'device' and not (value in ('auto', 'cpu', 'cuda') or value.startswith('cuda:')):
        return f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}"
    return None
