"""Image messages to RGB arrays and label arrays to image messages, without needless copies.

Raw ``sensor_msgs/Image`` data is viewed in place (``np.frombuffer``); one OpenCV call converts
it to RGB where the encoding needs it. Label images are copied once into the
``array.array`` rclpy keeps for ``uint8[]`` fields: assigning a numpy array to ``msg.data``
costs about 700 ms at 1024x2048x3 in rclpy (element-wise checks), ``tobytes`` a copy more.

When a ROS 2 ``cv_bridge`` is importable and passes a self-check on this machine it decodes
compressed images (its behaviour for them is the reference users know); raw images always take
the numpy path, which is already zero-copy.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
from sensor_msgs.msg import Image

from panoptic_ros.errors import PanopticError

# encoding -> (channels, numpy dtype, OpenCV conversion to RGB or None)
_RAW = {
    'rgb8': (3, np.uint8, None),
    'bgr8': (3, np.uint8, cv2.COLOR_BGR2RGB),
    'rgba8': (4, np.uint8, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, np.uint8, cv2.COLOR_BGRA2RGB),
    'mono8': (1, np.uint8, cv2.COLOR_GRAY2RGB),
    'mono16': (1, np.uint16, cv2.COLOR_GRAY2RGB),
    # ROS names the Bayer pattern by its first row, OpenCV by the second (as cv_bridge maps it)
    'bayer_rggb8': (1, np.uint8, cv2.COLOR_BayerBG2RGB),
    'bayer_bggr8': (1, np.uint8, cv2.COLOR_BayerRG2RGB),
    'bayer_gbrg8': (1, np.uint8, cv2.COLOR_BayerGR2RGB),
    'bayer_grbg8': (1, np.uint8, cv2.COLOR_BayerGB2RGB),
    'bayer_rggb16': (1, np.uint16, cv2.COLOR_BayerBG2RGB),
    'bayer_bggr16': (1, np.uint16, cv2.COLOR_BayerRG2RGB),
    'bayer_gbrg16': (1, np.uint16, cv2.COLOR_BayerGR2RGB),
    'bayer_grbg16': (1, np.uint16, cv2.COLOR_BayerGB2RGB),
    # 4:2:2, two bytes per pixel; ROS 'yuv422' is UYVY byte order
    'yuv422': (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    'uyvy': (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    'yuyv': (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    'yuv422_yuy2': (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
}
RAW_ENCODINGS = tuple(_RAW)
COMPRESSED_FORMATS = ('jpeg', 'png')
MAX_SIDE = 16384          # larger sides are treated as corrupt headers ('size')


class BadImage(PanopticError):
    """An input message the node cannot use.

    Attributes:
        kind: why, one of ``encoding``, ``empty``, ``size``, ``step``, ``data_length``,
            ``format``, ``decode`` (the diagnostics count bad inputs by this key).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def image_to_rgb(msg, max_side: int = MAX_SIDE) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``[H, W, 3] uint8`` RGB.

    ``mono16`` and 16-bit Bayer are scaled to 8 bits (``v >> 8``, as cv_bridge does). The
    result is a view of ``msg.data`` for ``rgb8`` with ``step == 3 * width``, a new array
    otherwise.

    Raises:
        BadImage: unknown encoding, zero or absurd size, step shorter than a row, data length
            not ``height * step``, odd width for 4:2:2.
    """
    enc = msg.encoding.lower()
    if enc not in _RAW:
        raise BadImage('encoding', f'unsupported encoding {msg.encoding!r}; expected one of '
                       f'{", ".join(RAW_ENCODINGS)}')
    channels, dtype, code = _RAW[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise BadImage('empty', f'empty image {w}x{h}')
    if h > max_side or w > max_side:
        raise BadImage('size', f'image size {w}x{h} exceeds {max_side} pixels per side')
    if channels == 2 and w % 2:
        raise BadImage('size', f'{enc} needs an even width, got {w}')
    itemsize = np.dtype(dtype).itemsize
    row = w * channels * itemsize
    if step < row:
        raise BadImage('step', f'step {step} < width x bytes per pixel = {row} ({enc})')
    if step % itemsize:
        raise BadImage('step', f'step {step} is not a multiple of {itemsize} bytes ({enc})')
    if len(msg.data) != h * step:
        raise BadImage('data_length', f'data has {len(msg.data)} bytes, expected height x '
                       f'step = {h} x {step} = {h * step}')
    data = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, :row]
    if itemsize > 1:
        order = '>' if msg.is_bigendian else '<'
        data = data.view(np.dtype(dtype).newbyteorder(order))
        data = (data >> 8).astype(np.uint8)
    img = data.reshape(h, w, channels) if channels > 1 else data.reshape(h, w)
    return img if code is None else cv2.cvtColor(img, code)


def compressed_to_rgb(msg, max_side: int = MAX_SIDE, bridge=None) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> ``[H, W, 3] uint8`` RGB.

    ``format`` may be plain (``jpeg``) or image_transport's (``rgb8; jpeg compressed bgr8``).

    Raises:
        BadImage: another format, or data that does not decode.
    """
    fmt = msg.format.lower()
    if not any(f in fmt for f in COMPRESSED_FORMATS + ('jpg',)):
        raise BadImage('format', f'unsupported compressed format {msg.format!r}; expected jpeg '
                       'or png')
    if not len(msg.data):
        raise BadImage('empty', 'compressed image with no data')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if bridge is not None:
        try:
            img = bridge.compressed_imgmsg_to_cv2(msg, desired_encoding='rgb8')
        except Exception as exc:  # cv_bridge raises CvBridgeError and cv2.error
            raise BadImage('decode', f'{msg.format} data does not decode: {exc}') from exc
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise BadImage('decode', f'{msg.format} data ({len(buf)} bytes) does not decode')
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[0] > max_side or img.shape[1] > max_side:
        raise BadImage('size', f'image size {img.shape[1]}x{img.shape[0]} exceeds {max_side}')
    return img


def to_rgb(msg, max_side: int = MAX_SIDE, bridge=None) -> np.ndarray:
    """An ``Image`` or ``CompressedImage`` -> ``[H, W, 3] uint8`` RGB (raises
    :class:`BadImage`)."""
    if hasattr(msg, 'format'):
        return compressed_to_rgb(msg, max_side, bridge)
    return image_to_rgb(msg, max_side)


def load_cv_bridge():
    """A ROS 2 ``cv_bridge.CvBridge`` that decodes a test PNG correctly, or None.

    The PyPI package named ``cv-bridge`` is an old ROS 1 port that fails on numpy 2; a
    self-check keeps a broken bridge out of the frame path.
    """
    try:
        from cv_bridge import CvBridge
        from sensor_msgs.msg import CompressedImage

        bridge = CvBridge()
        ref = np.zeros((8, 8, 3), np.uint8)
        ref[:, :4] = (250, 10, 10)
        ok, png = cv2.imencode('.png', cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
        got = bridge.compressed_imgmsg_to_cv2(
            CompressedImage(format='png', data=png.tobytes()), desired_encoding='rgb8')
        return bridge if ok and np.array_equal(np.asarray(got), ref) else None
    except Exception:  # ImportError, or a bridge that cannot work here
        return None


# the encodings of the node's output images: numpy dtype and channels
ENCODING_DTYPES = {'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1), '32SC1': (np.int32, 1),
                   'rgb8': (np.uint8, 3)}
_LABEL_DTYPES = {enc: dtype for enc, (dtype, channels) in ENCODING_DTYPES.items()
                 if channels == 1}


def label_array(msg) -> np.ndarray:
    """Inverse of :func:`label_image` for label images: ``mono8``, ``mono16`` or ``32SC1``
    ``Image`` (rclpy's or rosbags') -> ``[H, W]`` array viewing the message data.

    Raises:
        BadImage: another encoding, a step that is not whole pixels or shorter than a row, or
            data that is not ``height * step`` bytes.
    """
    if msg.encoding not in _LABEL_DTYPES:
        raise BadImage('encoding', f'label image encoding {msg.encoding!r}; expected one of '
                       f'{", ".join(_LABEL_DTYPES)}')
    dtype = np.dtype(_LABEL_DTYPES[msg.encoding]).newbyteorder('>' if msg.is_bigendian else '<')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if step < w * dtype.itemsize or step % dtype.itemsize:
        raise BadImage('step', f'step {step} for {w} pixels of {dtype.itemsize} bytes')
    if len(msg.data) != h * step:
        raise BadImage('data_length', f'data has {len(msg.data)} bytes, expected height x step '
                       f'= {h} x {step} = {h * step}')
    return np.frombuffer(msg.data, dtype).reshape(h, step // dtype.itemsize)[:, :w]


def image_buffer(header, height: int, width: int, encoding: str):
    """An ``sensor_msgs/Image`` of ``encoding`` (a key of :data:`ENCODING_DTYPES`) and the
    writable ``[H, W]`` (``[H, W, 3]`` for ``rgb8``) numpy view of its data, for images that
    are drawn or resized straight into the message instead of being copied in."""
    dtype, channels = ENCODING_DTYPES[encoding]
    step = width * channels * np.dtype(dtype).itemsize
    msg = Image(header=header, height=height, width=width, encoding=encoding,
                is_bigendian=sys.byteorder == 'big', step=step)
    # grown in place: assigning an array to ``msg.data`` copies it when rclpy's field checks
    # are off (its default), and these buffers are megabytes
    data = msg.data
    data.append(0)
    data *= height * step
    view = np.frombuffer(data, dtype).reshape((height, width, channels)[:3 if channels > 1
                                                                         else 2])
    return msg, view


def label_image(header, array: np.ndarray, encoding: str):
    """``[H, W]`` or ``[H, W, 3]`` array -> ``sensor_msgs/Image`` with ``header``.

    ``array`` must already have the dtype of ``encoding`` (``mono8`` uint8, ``mono16``
    uint16, ``32SC1`` int32, ``rgb8`` ``[H, W, 3]`` uint8).
    """
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    msg = Image(header=header, height=h, width=w, encoding=encoding,
                is_bigendian=sys.byteorder == 'big', step=array.strides[0])
    # one copy, straight into the message's own array (see image_buffer)
    msg.data.frombytes(array.reshape(-1).view(np.uint8))
    return msg
