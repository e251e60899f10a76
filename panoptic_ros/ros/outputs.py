"""A :class:`~panoptic_ros.models.result.PanopticResult` to the node's output messages."""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import RegionOfInterest

from panoptic_ros_msgs.msg import (LabelInfo, LabelMap, PanopticSegment,
                                   PanopticSegmentArray)
from panoptic_ros.labels import LabelSet
from panoptic_ros.models.result import PanopticResult
from panoptic_ros.palette import colorize
from panoptic_ros.ros.image_io import label_image


def _at_size(grid, size: tuple[int, int], dtype) -> np.ndarray:
    """``[h, w]`` label grid of a result -> ``[H, W]`` ``dtype`` at the image size: converted
    on the small grid, then resized with OpenCV's nearest neighbour (the mapping
    :func:`~panoptic_ros.models.result.upsample_nearest` uses), so a GPU result only copies
    the grid to the host."""
    small = grid.cpu().numpy().astype(dtype, copy=False)
    if small.shape == tuple(size):
        return small
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)


def semantic_image(header, result: PanopticResult, labels: LabelSet):
    """``panoptic/semantic``: ``mono8`` class ids with void 255, ``mono16`` (void 65535)
    beyond 255 classes."""
    if labels.void_id == 255:
        return label_image(header, _at_size(result.grid_semantic, result.size, np.uint8),
                           'mono8')
    return label_image(header, _at_size(result.grid_semantic, result.size, np.uint16),
                       'mono16')


def instance_image(header, result: PanopticResult):
    """``panoptic/instance``: ``mono16`` instance ids, 0 for stuff and void."""
    return label_image(header, _at_size(result.grid_instance, result.size, np.uint16),
                       'mono16')


def panoptic_image(header, result: PanopticResult):
    """``panoptic/panoptic``: ``32SC1`` ``class_id * label_divisor + instance_id``, -1 void."""
    return label_image(header, _at_size(result.grid_panoptic, result.size, np.int32), '32SC1')


def overlay_image(header, rgb: np.ndarray, result: PanopticResult, labels: LabelSet, *,
                  alpha: float, boundaries: bool, names: bool):
    """``panoptic/overlay``: ``rgb8`` camera image blended with the panoptic colouring (stuff
    in class colours, each instance its own shade and white outline, void left as the camera
    image). Colours and outlines are drawn on the post-processing grid and resized: the cost
    of the overlay hardly grows with the camera resolution."""
    sem = result.grid_semantic.cpu().numpy()
    colours = colorize(sem, result.grid_instance.cpu().numpy(), labels, boundaries=boundaries)
    void = (sem == labels.void_id).view(np.uint8)
    if colours.shape[:2] != rgb.shape[:2]:
        size = (rgb.shape[1], rgb.shape[0])
        colours = cv2.resize(colours, size, interpolation=cv2.INTER_NEAREST)
        void = cv2.resize(void, size, interpolation=cv2.INTER_NEAREST)
    out = cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)
    np.copyto(out, rgb, where=void[..., None].astype(bool))
    if names:
        for cls, inst, (cx, cy) in zip(result.segment_classes.tolist(),
                                       result.segment_instance_ids.tolist(),
                                       result.segment_centroids.tolist()):
            if inst:
                cv2.putText(out, labels.names[cls], (int(cx), int(cy)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return label_image(header, out, 'rgb8')


LABEL_OUTPUTS = ('semantic', 'instance', 'panoptic', 'overlay')


def label_messages(header, rgb: np.ndarray, result: PanopticResult, labels: LabelSet,
                   wanted, *, alpha: float = 0.5, boundaries: bool = True, names: bool = False):
    """Yield ``(name, Image)`` for each name of :data:`LABEL_OUTPUTS` in ``wanted``, in that
    order, each made just before it is yielded (a caller can publish one while the next is
    not made yet)."""
    if 'semantic' in wanted:
        yield 'semantic', semantic_image(header, result, labels)
    if 'instance' in wanted:
        yield 'instance', instance_image(header, result)
    if 'panoptic' in wanted:
        yield 'panoptic', panoptic_image(header, result)
    if 'overlay' in wanted:
        yield 'overlay', overlay_image(header, rgb, result, labels, alpha=alpha,
                                       boundaries=boundaries, names=names)


def segments_message(header, result: PanopticResult, labels: LabelSet, timings):
    """``panoptic/segments``: one ``PanopticSegment`` per segment, ids matching the images."""
    h, w = result.semantic.shape
    names = labels.names
    segments = [
        PanopticSegment(id=sid, instance_id=iid, class_id=cls, class_name=names[cls],
                        is_thing=thing, score=score, area=area,
                        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=bw, height=bh),
                        centroid_x=cx, centroid_y=cy)
        for sid, iid, cls, thing, score, area, (x, y, bw, bh), (cx, cy) in zip(
            result.segment_ids.tolist(), result.segment_instance_ids.tolist(),
            result.segment_classes.tolist(), result.segment_is_thing.tolist(),
            result.segment_scores.tolist(), result.segment_areas.tolist(),
            result.segment_boxes.tolist(), result.segment_centroids.tolist())]
    return PanopticSegmentArray(header=header, height=h, width=w,
                                label_divisor=result.label_divisor, segments=segments,
                                timings=timings)


def label_map_message(labels: LabelSet, model: str, label_divisor: int, stamp):
    """``panoptic/label_map`` (published latched once per configuration)."""
    msg = LabelMap(dataset=labels.name, model=model, label_divisor=label_divisor,
                   semantic_void=labels.void_id)
    msg.header.stamp = stamp
    msg.labels = [LabelInfo(class_id=c.class_id, dataset_id=int(c.dataset_id), name=c.name,
                            is_thing=bool(c.is_thing), color=[int(v) for v in c.color])
                  for c in labels.classes]
    return msg
