"""Where output files go, and how they get there without ever leaving a half-written file.

`next_output_path` follows ComfyUI's SaveImage naming: a `filename_prefix` such as
"TalkingHead/clip" puts files in the subfolder "TalkingHead" as "clip_00001_.mp4",
"clip_00002_.mp4", ... (counter = 1 + the highest counter already there). The prefix comes from a
user (a node widget, a shared workflow, a `/prompt` request), so it is untrusted: anything that would
land outside the output folder -- "..", absolute paths, symlinks pointing elsewhere -- is refused.

`atomic_write_path` gives a hidden temporary path in the destination folder; the file is renamed
into place only when the writer succeeded, and deleted on any error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import InputError

#: Digits in the file counter ("clip_00001_.mp4"), as in ComfyUI.
COUNTER_DIGITS = 5


@dataclass(frozen=True)
class OutputPath:
    """A file name chosen inside the output folder.

    Attributes:
        path: absolute path of the file to write.
        subfolder: folder relative to the output folder, "/"-separated ("" for the top level);
            this is what ComfyUI's UI results and `/view?subfolder=` expect.
        filename: the file's base name, e.g. "clip_00001_.mp4".
    """

    path: str
    subfolder: str
    filename: str

    def to_dict(self) -> dict:
        return {"path": self.path, "subfolder": self.subfolder, "filename": self.filename}


def _unwritable(output_dir: str, input_name: str, exc: OSError) -> InputError:
    return InputError(
        input_name,
        f"cannot write to the output folder {output_dir!r} ({exc.strerror or exc})",
        "Choose a folder you can write to (check its permissions and free space), or for "
        "ComfyUI start the server with --output-directory pointing to a writable folder",
    )


def _split_prefix(filename_prefix: str) -> tuple[str, str]:
    """Splits "a/b/name" into ("a/b", "name") after validating it; raises InputError."""
    if not isinstance(filename_prefix, str) or not filename_prefix.strip():
        raise InputError(
            "filename_prefix", "is empty", 'Give a name such as "TalkingHead/clip"'
        )
    # Both separators count: a workflow written on Windows must not smuggle "..\\" past us.
    prefix = filename_prefix.strip().replace("\\", "/")
    if any(ord(ch) < 32 for ch in prefix):
        raise InputError(
            "filename_prefix", f"{filename_prefix!r} contains control characters",
            "Use letters, digits, '-', '_' and '/' for subfolders",
        )
    if prefix.startswith("/") or re.match(r"^[A-Za-z]:", prefix):
        raise InputError(
            "filename_prefix",
            f"{filename_prefix!r} is an absolute path; files may only be saved inside the output "
            "folder",
            'Use a relative prefix such as "TalkingHead/clip"',
        )
    parts = prefix.split("/")
    if any(part in ("..",) for part in parts):
        raise InputError(
            "filename_prefix",
            f"{filename_prefix!r} points outside the output folder ('..')",
            'Use a relative prefix without "..", such as "TalkingHead/clip"',
        )
    name = parts[-1]
    if name in ("", "."):
        raise InputError(
            "filename_prefix",
            f"{filename_prefix!r} names a folder but no file name",
            'End the prefix with a file name, e.g. "TalkingHead/clip"',
        )
    subfolder = "/".join(p for p in parts[:-1] if p not in ("", "."))
    return subfolder, name


def _is_inside(root_real: str, candidate_real: str) -> bool:
    try:
        return os.path.commonpath([root_real, candidate_real]) == root_real
    except ValueError:  # different drives on Windows
        return False


def _next_counter(folder: str, name: str) -> int:
    # Like ComfyUI, count across extensions: clip_00003_.png and clip_00004_.mp4 share counters.
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)_\.")
    highest = 0
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        match = pattern.match(entry)
        if match:
            highest = max(highest, int(match.group(1)))
    return highest + 1


def next_output_path(output_dir: str, filename_prefix: str, extension: str) -> OutputPath:
    """Chooses the next free file name for `filename_prefix` inside `output_dir`.

    Args:
        output_dir: the output folder (ComfyUI: `folder_paths.get_output_directory()`); created if
            missing.
        filename_prefix: "name" or "sub/folders/name"; must stay inside `output_dir`.
        extension: file extension with or without the dot, e.g. "mp4".
    Returns:
        OutputPath with the absolute path (its folder is created), the subfolder and the filename.
    Raises:
        InputError: naming `filename_prefix` when it escapes the output folder or is malformed,
            or naming `output_dir` when that folder cannot be created or written.
    """
    subfolder, name = _split_prefix(filename_prefix)
    ext = extension.lstrip(".")
    if not ext or "/" in ext or "\\" in ext:
        raise ValueError(f"bad extension {extension!r}")  # a programming error, not user input

    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as exc:
        raise _unwritable(output_dir, "output_dir", exc) from exc
    root_real = os.path.realpath(output_dir)
    folder = os.path.join(root_real, *subfolder.split("/")) if subfolder else root_real
    # realpath resolves symlinks in the existing part of the path: a subfolder that is a symlink
    # to /etc resolves to /etc and is refused here, before anything is created.
    folder_real = os.path.realpath(folder)
    if not _is_inside(root_real, folder_real):
        raise InputError(
            "filename_prefix",
            f"{filename_prefix!r} resolves to {folder_real!r}, outside the output folder "
            f"{root_real!r} (a symlink or '..')",
            "Use a subfolder that really lies inside the output folder",
        )
    try:
        os.makedirs(folder_real, exist_ok=True)
    except OSError as exc:
        raise _unwritable(folder_real, "output_dir", exc) from exc
    # Re-check after creation: a symlink swapped in between must not win.
    if not _is_inside(root_real, os.path.realpath(folder_real)):
        raise InputError(
            "filename_prefix", f"{filename_prefix!r} resolves outside the output folder",
            "Use a subfolder that really lies inside the output folder",
        )

    counter = _next_counter(folder_real, name)
    filename = f"{name}_{counter:0{COUNTER_DIGITS}}_.{ext}"
    return OutputPath(path=os.path.join(folder_real, filename), subfolder=subfolder, filename=filename)


@contextlib.contextmanager
def atomic_write_path(final_path: str, input_name: str = "output_path") -> Iterator[str]:
    """Yields a temporary path next to `final_path`; renames it into place on success.

    The temporary file is hidden (leading "."), lives in the same folder (so the final
    `os.replace` is an atomic rename on the same file system) and keeps the extension (so tools
    such as ffmpeg pick the right container from the name). On any exception the temporary file
    is deleted and the exception propagates: no half-written file is ever left behind, and an
    existing file at `final_path` is untouched.

    Args:
        final_path: where the finished file should end up; its folder is created if missing.
        input_name: the input to name in the InputError if the folder is not writable.
    Raises:
        InputError: the destination folder cannot be created or written.
    """
    folder = os.path.dirname(os.path.abspath(final_path))
    base = os.path.basename(final_path)
    stem, ext = os.path.splitext(base)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{ext}", dir=folder)
    except OSError as exc:
        raise _unwritable(folder, input_name, exc) from exc
    os.close(fd)
    try:
        yield temp_path
        os.replace(temp_path, final_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        raise


def save_json(output_dir: str, filename_prefix: str, payload: Any) -> OutputPath:
    """Writes `payload` as JSON to the next free `prefix_NNNNN_.json` in output_dir, atomically."""
    target = next_output_path(output_dir, filename_prefix, "json")
    with atomic_write_path(target.path, "filename_prefix") as temp_path:
        with open(temp_path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
    return target
