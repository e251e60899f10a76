"""A :class:`~panoptic_ros.models.result.PanopticResult` to the node's output messages."""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import RegionOfInterest

from panoptic_ros_msgs.msg import (LabelInfo, LabelMap, PanopticSegment,
                                   PanopticSegmentArray)
from panoptic_ros.labels import LabelSet
from panoptic_ros.models.result import PanopticResult
from panoptic_ros.palette import outline_px, panoptic_index
from panoptic_ros.ros.image_io import ENCODING_DTYPES, image_buffer, label_image
from panoptic_ros.tracking import track_lut


def _label_message(header, grid: np.ndarray, size: tuple[int, int], encoding: str):
    """``[h, w]`` label grid of a result (on the host) -> ``sensor_msgs/Image`` of ``encoding``
    at the image size: converted to the encoding's dtype on the small grid, then resized with
    OpenCV's nearest neighbour (the mapping :func:`~panoptic_ros.models.result.upsample_nearest`
    uses) straight into the message's buffer; a GPU result only copies the grid to the host."""
    small = grid.astype(ENCODING_DTYPES[encoding][0], copy=False)
    if small.shape == tuple(size):
        return label_image(header, small, encoding)
    msg, view = image_buffer(header, *size, encoding)
    cv2.resize(small, size[::-1], dst=view, interpolation=cv2.INTER_NEAREST)
    return msg


def semantic_image(header, result: PanopticResult, labels: LabelSet):
    """``panoptic/semantic``: ``mono8`` class ids with void 255, ``mono16`` (void 65535)
    beyond 255 classes."""
    return _label_message(header, result.grid_semantic.cpu().numpy(), result.size,
                          'mono8' if labels.void_id == 255 else 'mono16')


TRACK_WRAP = 65535     # track ids in a mono16 image: 1..65535, then 1 again


def instance_image(header, result: PanopticResult, track_ids=None):
    """``panoptic/instance``: ``mono16`` instance ids, 0 for stuff and void; with
    ``track_ids`` (``[S]``) the segments' track ids instead, wrapped into ``1..65535``."""
    grid = result.grid_instance.cpu().numpy()
    if track_ids is not None:
        lut = track_lut(result, track_ids)
        grid = np.where(lut > 0, (lut - 1) % TRACK_WRAP + 1, 0).astype(np.uint16)[grid]
    return _label_message(header, grid, result.size, 'mono16')


def panoptic_image(header, result: PanopticResult):
    """``panoptic/panoptic``: ``32SC1`` ``class_id * label_divisor + instance_id``, -1 void."""
    return _label_message(header, result.grid_panoptic.cpu().numpy(), result.size, '32SC1')


def overlay_image(header, rgb: np.ndarray, result: PanopticResult, labels: LabelSet, *,
                  alpha: float, boundaries: bool, names: bool, track_ids=None):
    """``panoptic/overlay``: ``rgb8`` camera image under the panoptic colouring.

    On every segment the class colour (stuff) or the instance's own shade of it (things, see
    :mod:`panoptic_ros.palette`) is blended with weight ``alpha`` over the camera's brightness:
    the colour dominates, the camera's texture stays visible, and the camera's own colours do
    not muddy the class colours. Void keeps the camera image (so does everything at
    ``alpha`` 0, but the outlines). Instances get white or black outlines (whichever
    contrasts), :func:`~panoptic_ros.palette.outline_px` thick or one grid pixel if more;
    ``names`` writes class names, scaled with the image and on a black halo, on instances
    large enough to hold them. With ``track_ids`` (``[S]``) an instance's shade follows its
    track, so an object keeps its colour from frame to frame.

    Colours and outlines are drawn on the post-processing grid and resized; the full-size
    work is a few OpenCV passes (grey, multiply, add), so the cost hardly grows with the
    camera resolution."""
    height, width = rgb.shape[:2]
    sem = result.grid_semantic.cpu().numpy()
    ins = result.grid_instance.cpu().numpy()
    thickness = 0
    if boundaries:      # on the grid, so that it is outline_px() thick at the image size
        thickness = max(1, round(outline_px(height, width) * sem.shape[0] / height))
    iids = result.segment_instance_ids.cpu().numpy()
    classes = result.segment_classes.cpu().numpy()
    known = np.full(int(max(iids.max(initial=0), ins.max(initial=0))) + 1, -1, np.int64)
    known[iids[iids > 0]] = classes[iids > 0]
    keys = None if track_ids is None else track_lut(result, track_ids)
    index, table = panoptic_index(sem, ins, labels, thickness, instance_classes=known,
                                  alpha=alpha, shade_keys=keys)
    # out = add + grey * keep / 255: the colours with weight alpha, outlines at full weight;
    # keep == 255 (void, or alpha about 0) is copied from the camera image instead
    add = np.rint(table * alpha).astype(np.uint8)
    keep = np.full(len(table), round(255 * (1.0 - alpha)), np.uint8)
    add[-2:], keep[-2:] = table[-2:], 0
    add[0], keep[0] = 0, 255
    add, keep = np.take(add, index, axis=0), np.take(keep, index)
    if index.shape != (height, width):
        add = cv2.resize(add, (width, height), interpolation=cv2.INTER_NEAREST)
        keep = cv2.resize(keep, (width, height), interpolation=cv2.INTER_NEAREST)
    grey = cv2.multiply(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), keep, scale=1.0 / 255.0)
    msg, out = image_buffer(header, height, width, 'rgb8')     # drawn in the message
    cv2.add(add, cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), dst=out)
    cv2.copyTo(rgb, cv2.compare(keep, 255, cv2.CMP_EQ), out)
    if names:
        _draw_names(out, result, labels)
    return msg


def _draw_names(out: np.ndarray, result: PanopticResult, labels: LabelSet) -> None:
    """Class names centred on the instances, white on a black halo, the font scaled with the
    image (0.6 at 512x1024, 1.2 at 1024x2048), larger instances first. Instances smaller than
    half their name's box, or whose name would cover one already written, stay unnamed.

    The halo is the dilated glyph mask: OpenCV 5 caps ``putText``'s thickness, so a thick
    black pass under the white one would not show."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.4, min(out.shape[:2]) / 850)
    thick = max(1, round(2.5 * scale))
    pad = max(2, round(2.5 * scale))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pad + 1, 2 * pad + 1))
    margin = pad + thick
    height, width = out.shape[:2]
    taken: list[tuple[int, int, int, int]] = []
    segments = sorted(zip(result.segment_areas.tolist(), result.segment_classes.tolist(),
                          result.segment_instance_ids.tolist(),
                          result.segment_centroids.tolist()), reverse=True)
    for area, cls, inst, (cx, cy) in segments:
        if not inst:
            continue
        text = labels.names[cls]
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        if area < 0.5 * tw * th:
            continue
        bw, bh = tw + 2 * margin, th + base + 2 * margin
        x0 = min(max(0, int(cx - tw / 2) - margin), width - bw)    # whole, where it fits
        y0 = min(max(0, int(cy - th / 2) - margin), height - bh)
        box = (x0, y0, x0 + bw, y0 + bh)
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
               for b in taken):
            continue
        taken.append(box)
        glyph = np.zeros((box[3] - y0, box[2] - x0), np.uint8)
        cv2.putText(glyph, text, (margin, margin + th), font, scale, 255, thick, cv2.LINE_AA)
        halo = cv2.dilate(glyph, kernel)
        gx, gy = max(0, -x0), max(0, -y0)             # the part inside the image
        x1, y1 = min(width, box[2]), min(height, box[3])
        if x1 <= x0 + gx or y1 <= y0 + gy:
            continue
        region = out[y0 + gy:y1, x0 + gx:x1]
        g = glyph[gy:gy + region.shape[0], gx:gx + region.shape[1], None] / 255.0
        h = halo[gy:gy + region.shape[0], gx:gx + region.shape[1], None] / 255.0
        region[:] = np.rint(region * (1.0 - h) * (1.0 - g) + 255.0 * g).astype(np.uint8)


LABEL_OUTPUTS = ('semantic', 'instance', 'panoptic', 'overlay')


def label_messages(header, rgb: np.ndarray, result: PanopticResult, labels: LabelSet,
                   wanted, *, alpha: float = 0.5, boundaries: bool = True, names: bool = False,
                   track_ids=None, instance_tracks: bool = False):
    """Yield ``(name, Image)`` for each name of :data:`LABEL_OUTPUTS` in ``wanted``, in that
    order, each made just before it is yielded (a caller can publish one while the next is
    not made yet). ``track_ids`` (``[S]``) colour the overlay by track and, with
    ``instance_tracks``, are the instance image's values."""
    if 'semantic' in wanted:
        yield 'semantic', semantic_image(header, result, labels)
    if 'instance' in wanted:
        yield 'instance', instance_image(header, result,
                                         track_ids if instance_tracks else None)
    if 'panoptic' in wanted:
        yield 'panoptic', panoptic_image(header, result)
    if 'overlay' in wanted:
        yield 'overlay', overlay_image(header, rgb, result, labels, alpha=alpha,
                                       boundaries=boundaries, names=names, track_ids=track_ids)


def segments_message(header, result: PanopticResult, labels: LabelSet, timings,
                     track_ids=None):
    """``panoptic/segments``: one ``PanopticSegment`` per segment, ids matching the images;
    ``track_ids`` (``[S]``, from :class:`~panoptic_ros.tracking.InstanceTracker`) fill
    ``track_id`` (0 without)."""
    h, w = result.size         # not result.semantic.shape: that builds the full-size map
    names = labels.names
    tracks = [0] * result.num_segments if track_ids is None else track_ids.tolist()
    segments = [
        PanopticSegment(id=sid, instance_id=iid, track_id=tid, class_id=cls,
                        class_name=names[cls], is_thing=thing, score=score, area=area,
                        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=bw, height=bh),
                        centroid_x=cx, centroid_y=cy)
        for sid, iid, tid, cls, thing, score, area, (x, y, bw, bh), (cx, cy) in zip(
            result.segment_ids.tolist(), result.segment_instance_ids.tolist(), tracks,
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
