"""Finding and running ffmpeg, robustly.

In the style of ComfyUI-VideoHelperSuite: one place that knows which ffmpeg binary to use, runs it
with argument lists only (never through a shell, so paths with spaces or quotes are never
re-interpreted), drains its stderr on a background thread into a bounded tail (a chatty ffmpeg can
otherwise fill the pipe buffer and deadlock us while we block writing frames to its stdin), and turns
every failure -- missing binary, non-zero exit, dying mid-stream -- into a `ToolError` that carries
the last lines ffmpeg printed.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, Deque, Optional, Sequence

from .errors import ToolError

#: Environment variable that, when set, names the ffmpeg binary to use (checked first).
FFMPEG_ENV_VAR = "TALKINGHEAD_FFMPEG"

#: Flags put in front of every command: no banner, no interactive keyboard handling, no progress
#: spam (we report progress ourselves), warnings and errors only so the tail stays meaningful.
BASE_ARGS = ("-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning")


@dataclass(frozen=True)
class FfmpegConfig:
    """How ffmpeg processes are supervised.

    Attributes:
        stderr_tail_lines: how many of ffmpeg's last stderr lines are kept for error messages.
        exit_timeout_s: how long to wait for ffmpeg to exit after a failure before killing it.
    """

    stderr_tail_lines: int = 40
    exit_timeout_s: float = 10.0


DEFAULT_CONFIG = FfmpegConfig()


def find_ffmpeg() -> str:
    """Returns the path of the ffmpeg binary to use.

    Order: the `TALKINGHEAD_FFMPEG` environment variable, then imageio-ffmpeg's bundled static
    build (known to have libx264 and the native AAC encoder), then `ffmpeg` on PATH.

    Raises:
        ToolError: no usable ffmpeg was found, or the environment variable names a missing file.
    """
    env_path = os.environ.get(FFMPEG_ENV_VAR, "").strip()
    if env_path:
        resolved = shutil.which(env_path) or (env_path if os.path.isfile(env_path) else None)
        if resolved is None or not os.access(resolved, os.X_OK):
            raise ToolError(
                "ffmpeg",
                f"{FFMPEG_ENV_VAR}={env_path!r} does not name an executable file. "
                f"Point it at an ffmpeg binary, or unset it to use imageio-ffmpeg's bundled ffmpeg",
            )
        return resolved
    try:
        import imageio_ffmpeg  # light import; ships a static ffmpeg in its wheel

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and os.path.isfile(exe):
            return exe
    except Exception:  # not installed, or its binary is missing for this platform
        pass
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    raise ToolError(
        "ffmpeg",
        "no ffmpeg binary found. Install it with `pip install imageio-ffmpeg` (ships one), put "
        f"ffmpeg on PATH, or set {FFMPEG_ENV_VAR} to its full path",
    )


class StderrTail:
    """Drains a pipe on a daemon thread, keeping only its last lines (bounded memory)."""

    def __init__(self, stream: IO[bytes], max_lines: int):
        self._lines: Deque[str] = collections.deque(maxlen=max_lines)
        self._stream = stream
        self._thread = threading.Thread(target=self._drain, name="ffmpeg-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    self._lines.append(line)
        except (OSError, ValueError):  # pipe closed under us while killing the process
            pass

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)

    def text(self) -> str:
        return "\n".join(self._lines)


def _popen(args: Sequence[str], stdin: Optional[int]) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            list(args),
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            shell=False,
        )
    except OSError as exc:
        raise ToolError("ffmpeg", f"could not start {args[0]!r}: {exc}") from exc


def run_ffmpeg(args: Sequence[str], *, config: FfmpegConfig = DEFAULT_CONFIG) -> str:
    """Runs one ffmpeg command to completion (no stdin).

    Args:
        args: arguments after the binary, e.g. ["-i", "in.mp4", "-c", "copy", "out.mp4"]
            (`BASE_ARGS` are added in front).
    Returns:
        ffmpeg's stderr tail (warnings), possibly empty.
    Raises:
        ToolError: ffmpeg exited non-zero; the message has its stderr tail.
    """
    proc = _popen([find_ffmpeg(), *BASE_ARGS, *args], stdin=subprocess.DEVNULL)
    tail = StderrTail(proc.stderr, config.stderr_tail_lines)
    try:
        returncode = proc.wait()
    except BaseException:  # Ctrl-C / interrupted: never leave an orphan encoder behind
        _kill(proc)
        raise
    tail.join()
    if returncode != 0:
        raise ToolError("ffmpeg", f"exited with code {returncode}", tail.text())
    return tail.text()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
        pass


class FfmpegWriter:
    """An ffmpeg process that reads a stream (e.g. rawvideo frames) on its stdin.

    Use as a context manager: leaving the block normally closes stdin and waits for ffmpeg to
    finish (raising ToolError if it failed); leaving it with an exception kills ffmpeg.

        with FfmpegWriter(["-f", "rawvideo", ..., "-i", "-", ..., out]) as writer:
            for frame in frames:
                writer.write(frame)          # bytes-like, e.g. a C-contiguous uint8 array
    """

    def __init__(self, args: Sequence[str], *, config: FfmpegConfig = DEFAULT_CONFIG):
        self.config = config
        self.args = [find_ffmpeg(), *BASE_ARGS, *args]
        self.proc = _popen(self.args, stdin=subprocess.PIPE)
        self._tail = StderrTail(self.proc.stderr, config.stderr_tail_lines)
        self._closed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self) -> str:
        return self._tail.text()

    def write(self, data) -> None:
        """Writes bytes to ffmpeg's stdin; raises ToolError if ffmpeg has died."""
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError) as exc:
            returncode = self._wait_after_failure()
            raise ToolError(
                "ffmpeg",
                f"stopped while receiving data (exit code {returncode}; {type(exc).__name__})",
                self._tail.text(),
            ) from exc

    def _wait_after_failure(self) -> Optional[int]:
        try:
            return self.proc.wait(timeout=self.config.exit_timeout_s)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            return self.proc.returncode
        finally:
            self._tail.join()

    def close(self) -> str:
        """Closes stdin, waits for ffmpeg to finish; returns its stderr tail or raises ToolError."""
        if self._closed:
            return self._tail.text()
        self._closed = True
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):  # it already died; the exit code tells why
            pass
        returncode = self.proc.wait()
        self._tail.join()
        if returncode != 0:
            raise ToolError("ffmpeg", f"exited with code {returncode}", self._tail.text())
        return self._tail.text()

    def abort(self) -> None:
        """Kills ffmpeg (used when the input fails midway); safe to call more than once."""
        self._closed = True
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        _kill(self.proc)
        self._tail.join()

    def __enter__(self) -> "FfmpegWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
