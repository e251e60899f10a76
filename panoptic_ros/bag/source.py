"""A rosbag2 recording (MCAP or sqlite3, any ROS 2 distro's layout) as a stream of camera
frames, each with its ground-truth panoptic image when the bag has one.

The image topic is found by type when not given; ground truth is matched to images by header
stamp. Frames keep the bag's serialized bytes, so the live replay publishes exactly what was
recorded. Frames whose stamps repeat an earlier one are restamped with the bag time (outputs
are matched to inputs by stamp). A bag that fails part way stops the stream with
:attr:`BagSource.error` set: whatever was read before still counts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from panoptic_ros.bag import types
from panoptic_ros.bag.make import DIVISOR_KEY, GT_TOPIC, TRACKS_KEY
from panoptic_ros.encoding import LABEL_DIVISOR
from panoptic_ros.errors import PanopticError
from panoptic_ros.ros.image_io import label_array

HOLD = 32    # images kept waiting for their ground truth before going on without it


@dataclass
class Frame:
    """One camera frame of the bag.

    Attributes:
        index: position among the bag's images (0-based).
        log_ns: the bag's receive time of the image.
        stamp_ns: header stamp (unique in the stream; outputs are matched on it).
        msgtype: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        raw: CDR bytes of the message (as recorded, or restamped).
        msg: the message deserialized by rosbags (``data`` is a numpy ``uint8`` array).
        gt: ``[H, W] int32`` ground-truth panoptic ids (void -1), or ``None``.
    """

    index: int
    log_ns: int
    stamp_ns: int
    msgtype: str
    raw: bytes
    msg: object
    gt: np.ndarray | None = None


def stamp_ns(stamp) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (rclpy's or rosbags')."""
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)


def gt_array(msg) -> np.ndarray:
    """``[H, W] int32`` of a ``32SC1`` image message."""
    if msg.encoding != '32SC1':
        raise PanopticError(f'ground-truth image has encoding {msg.encoding!r}; expected 32SC1 '
                            '(class_id * label_divisor + instance_id, void -1)')
    return label_array(msg).astype(np.int32)


class BagSource:
    """Frames of a bag.

    Args:
        path: the bag folder (``metadata.yaml`` and its ``.mcap``/``.db3`` files), or a single
            ``.mcap``/``.db3`` file.
        image_topic: camera topic; ``None``: the only ``Image``/``CompressedImage`` topic
            besides the ground truth (a raw topic is preferred to its ``/compressed`` twin).
        gt_topic: ground-truth topic; ``None``: ``/ground_truth/panoptic`` when present;
            ``''``: no ground truth.

    Raises:
        PanopticError: the bag cannot be opened, or the topics are missing or ambiguous.
    """

    def __init__(self, path: str | Path, image_topic: str | None = None,
                 gt_topic: str | None = None) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not ((self.path / 'metadata.yaml').is_file()
                or self.path.suffix in ('.mcap', '.db3') and self.path.is_file()):
            raise PanopticError(f'{self.path} is not a rosbag2 bag: expected a folder with '
                                'metadata.yaml and its .mcap or .db3 files, or one such file')
        self.store = types.typestore()
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except Exception as exc:   # rosbags raises ReaderError, and OSError/ValueError below it
            raise PanopticError(f'cannot open bag {self.path}: {exc}') from exc
        conns = {c.topic: c for c in self.reader.connections}
        images = {t: c.msgtype for t, c in conns.items()
                  if c.msgtype in (types.IMAGE, types.COMPRESSED_IMAGE)}
        if gt_topic is None:
            gt_topic = GT_TOPIC if GT_TOPIC in conns else ''
        elif gt_topic and gt_topic not in conns:
            raise PanopticError(f'no topic {gt_topic} in {self.path} (topics: '
                                f'{", ".join(sorted(conns))})')
        if gt_topic and conns[gt_topic].msgtype != types.IMAGE:
            raise PanopticError(f'ground-truth topic {gt_topic} is {conns[gt_topic].msgtype}; '
                                f'expected {types.IMAGE} (32SC1)')
        self.gt_topic = gt_topic
        if image_topic is None:
            cands = [t for t in images if t != gt_topic]
            cands = [t for t in cands if not (t.endswith('/compressed')
                                              and t[:-len('/compressed')] in cands)]
            if len(cands) != 1:
                self.reader.close()
                raise PanopticError(
                    f'{"no" if not cands else "several"} camera image topics in {self.path}'
                    f'{": " + ", ".join(sorted(cands)) if cands else ""}; pass --image-topic '
                    f'(topics: {", ".join(f"{t} [{c.msgtype}]" for t, c in sorted(conns.items()))})')
            image_topic = cands[0]
        elif image_topic not in images:
            self.reader.close()
            raise PanopticError(f'{image_topic} is not an Image or CompressedImage topic of '
                                f'{self.path} (image topics: {", ".join(sorted(images)) or "none"})')
        self.image_topic = image_topic
        self.msgtype = images[image_topic]
        self.count = sum(c.msgcount for c in self.reader.connections if c.topic == image_topic)
        metadata = getattr(self.reader.storage, 'metadata', None)
        custom = getattr(metadata, 'custom', None) or {}
        self.label_divisor = int(custom.get(DIVISOR_KEY, LABEL_DIVISOR))
        # ground-truth instance ids are track ids (panoptic bag make of a video dataset)
        self.gt_tracks = bool(self.gt_topic) and custom.get(TRACKS_KEY) == "true"
        files = [self.path] if self.path.is_file() else list(self.path.iterdir())
        self.storage = 'mcap' if any(f.suffix == '.mcap' for f in files) else 'sqlite3'
        self.error = ''          # why reading stopped early
        self.unreadable = 0      # messages that did not deserialize and were skipped
        self.restamped = 0

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> 'BagSource':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def restamp(self, msg, new_ns: int):
        """``(message, CDR bytes)`` of an image message of this bag with another stamp."""
        header = replace(msg.header, stamp=replace(msg.header.stamp, sec=new_ns // 10**9,
                                                   nanosec=new_ns % 10**9))
        msg = replace(msg, header=header)
        return msg, bytes(self.store.serialize_cdr(msg, self.msgtype))

    def frames(self) -> Iterator[Frame]:
        """Frames in bag order. Stops early, with :attr:`error` set, where the bag is
        truncated or corrupt."""
        conns = [c for c in self.reader.connections
                 if c.topic in (self.image_topic, self.gt_topic)]
        pending: OrderedDict[int, Frame] = OrderedDict()   # images waiting for ground truth
        gts: dict[int, np.ndarray] = {}                     # ground truth waiting for images
        seen: set[int] = set()
        index = 0
        messages = self.reader.messages(connections=conns)
        while True:
            try:
                conn, log_ns, raw = next(messages)
            except StopIteration:
                break
            except Exception as exc:   # truncated file, bad chunk, sqlite error...
                self.error = f'{type(exc).__name__}: {exc}'
                break
            try:
                msg = self.store.deserialize_cdr(raw, conn.msgtype)
                gt = gt_array(msg) if conn.topic == self.gt_topic else None
            except Exception:
                self.unreadable += 1
                continue
            stamp = stamp_ns(msg.header.stamp)
            if conn.topic == self.gt_topic:
                if stamp in pending:
                    pending[stamp].gt = gt
                else:
                    gts[stamp] = gt
                    if len(gts) > HOLD:
                        gts.pop(next(iter(gts)))
            else:
                frame = Frame(index, log_ns, stamp, conn.msgtype, bytes(raw), msg,
                              gts.pop(stamp, None))
                index += 1
                if stamp in seen:
                    new = log_ns
                    while new in seen:
                        new += 1
                    frame.msg, frame.raw = self.restamp(msg, new)
                    frame.stamp_ns = new
                    self.restamped += 1
                seen.add(frame.stamp_ns)
                # keyed by the recorded stamp, which the ground truth carries
                pending[stamp if stamp not in pending else -index] = frame
            while pending:
                first = next(iter(pending.values()))
                if first.gt is None and self.gt_topic and len(pending) <= HOLD:
                    break
                yield pending.popitem(last=False)[1]
        while pending:
            yield pending.popitem(last=False)[1]
