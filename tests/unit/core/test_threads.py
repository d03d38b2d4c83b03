"""OpenCV's thread pool is off inside the per-frame pipeline and restored after it."""
import pytest

from talkinghead.pipeline.core.threads import opencv_in_calling_thread

cv2 = pytest.importorskip("cv2")


def test_opencv_runs_in_the_calling_thread_inside_and_is_restored_after():
    before = cv2.getNumThreads()
    with opencv_in_calling_thread():
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before
    with pytest.raises(RuntimeError):
        with opencv_in_calling_thread():
            raise RuntimeError("a stage failed")
    assert cv2.getNumThreads() == before
