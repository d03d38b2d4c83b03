"""Thread settings for per-frame pipelines that run their stages in threads of their own."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def opencv_in_calling_thread() -> Iterator[None]:
    """Within the block, OpenCV runs each call in the thread that makes it (no worker pool).

    For pipelines that already give each stage a thread: OpenCV's pool would add a second layer
    of threads competing for the same cores. Process-wide (OpenCV has one setting); the previous
    value is restored on exit. Does nothing where OpenCV is not installed.
    """
    try:
        import cv2  # noqa: PLC0415 - optional: the core install has no OpenCV
    except ImportError:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)
