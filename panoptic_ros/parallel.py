"""Process pools for image work, safe to start from any process.

Workers are forked (no re-import: start-up stays cheap) and run OpenCV on one thread each: one
process per core is the parallelism. A worker never calls ``cv2.setNumThreads``, which hangs in
a forked child once the parent has run OpenCV's thread pool. Instead, when the parent has not
imported OpenCV, ``OPENCV_FOR_THREADS_NUM=1`` is set for the workers, which then import it in
parallel (0.1 s saved on the command line's critical path); otherwise the parent switches
OpenCV to one thread around the pool and the workers inherit that.

Workers keep the memory they free for their next image
(:func:`panoptic_ros.heap.keep_freed_memory`): each image allocates and frees the same few
large buffers, and glibc's default hands them back to the system and faults them in again,
page by page, for the next one (``panoptic pq``: 95k page faults and a quarter of a worker's
time on 30 pairs at 1024x2048).
"""

from __future__ import annotations

import contextlib
import os
import sys
from multiprocessing import get_context
from typing import Callable, Iterator

from panoptic_ros.heap import keep_freed_memory

_ENV = 'OPENCV_FOR_THREADS_NUM'


@contextlib.contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """Run the body with OpenCV on one thread; restore the previous setting after."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    keep_freed_memory()
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def _opencv_threads_env() -> Iterator[None]:
    previous = os.environ.get(_ENV)
    os.environ[_ENV] = '1'
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_ENV]
        else:
            os.environ[_ENV] = previous


@contextlib.contextmanager
def process_pool(workers: int, initializer: Callable | None = None, initargs: tuple = (),
                 opencv_single: bool = True) -> Iterator:
    """A forked ``multiprocessing.Pool`` whose workers keep freed memory
    (:func:`~panoptic_ros.heap.keep_freed_memory`).

    Args:
        workers: processes.
        initializer, initargs: run once in each worker.
        opencv_single: workers run OpenCV on one thread (decode-bound work). False keeps
            OpenCV's default threads, which helps work that alternates Python and OpenCV.
    """
    if not opencv_single:
        single = contextlib.nullcontext()
    elif 'cv2' in sys.modules:
        single = opencv_single_threaded()
    else:
        single = _opencv_threads_env()
    with single:
        pool = get_context('fork').Pool(workers, _start_worker, (initializer, initargs))
        try:
            yield pool
        finally:
            pool.close()
            pool.join()
