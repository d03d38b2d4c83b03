"""Output naming (ComfyUI SaveImage semantics, escape-proof) and atomic writes."""

from __future__ import annotations

import os

import pytest

from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.core.output_paths import OutputPath, atomic_write_path, next_output_path


def test_counter_starts_at_one_and_increments(tmp_path):
    first = next_output_path(str(tmp_path), "clip", "mp4")
    assert first == OutputPath(str(tmp_path / "clip_00001_.mp4"), "", "clip_00001_.mp4")
    open(first.path, "wb").close()
    second = next_output_path(str(tmp_path), "clip", ".mp4")
    assert second.filename == "clip_00002_.mp4"


def test_counter_is_one_plus_the_highest_across_extensions(tmp_path):
    for name in ("clip_00003_.png", "clip_00007_.mp4", "clipper_00099_.mp4", "clip_final.mp4",
                 ".clip_00050_.partial.mp4"):
        (tmp_path / name).write_bytes(b"")
    assert next_output_path(str(tmp_path), "clip", "mp4").filename == "clip_00008_.mp4"


def test_subfolders_are_created_and_reported(tmp_path):
    result = next_output_path(str(tmp_path), "TalkingHead/takes/clip", "mp4")
    assert result.subfolder == "TalkingHead/takes"
    assert result.path == str(tmp_path / "TalkingHead" / "takes" / "clip_00001_.mp4")
    assert (tmp_path / "TalkingHead" / "takes").is_dir()
    assert next_output_path(str(tmp_path), "./TalkingHead//clip", "mp4").subfolder == "TalkingHead"


def test_output_dir_is_created(tmp_path):
    result = next_output_path(str(tmp_path / "new" / "out"), "clip", "mp4")
    assert os.path.isdir(os.path.dirname(result.path))


@pytest.mark.parametrize("prefix", [
    "../clip", "a/../../clip", "TalkingHead/../../etc/clip", "/etc/clip", "..\\..\\clip",
    "C:/Windows/clip", "", "   ", "TalkingHead/", "sub/.", "bad\x00name",
])
def test_escapes_and_malformed_prefixes_are_refused(tmp_path, prefix):
    out = tmp_path / "output"
    out.mkdir()
    with pytest.raises(InputError) as info:
        next_output_path(str(out), prefix, "mp4")
    assert info.value.input_name == "filename_prefix"
    assert os.listdir(tmp_path) == ["output"] and os.listdir(out) == []


def test_symlinked_subfolder_pointing_outside_is_refused(tmp_path):
    out, outside = tmp_path / "output", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "link")
    with pytest.raises(InputError) as info:
        next_output_path(str(out), "link/clip", "mp4")
    assert info.value.input_name == "filename_prefix" and "outside" in str(info.value)
    with pytest.raises(InputError):
        next_output_path(str(out), "link/deeper/clip", "mp4")
    assert os.listdir(outside) == []


def test_symlink_inside_output_dir_is_allowed(tmp_path):
    out = tmp_path / "output"
    (out / "real").mkdir(parents=True)
    os.symlink(out / "real", out / "alias")
    assert next_output_path(str(out), "alias/clip", "mp4").path == str(out / "real" / "clip_00001_.mp4")


def test_output_dir_itself_may_be_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "out")
    result = next_output_path(str(tmp_path / "out"), "sub/clip", "mp4")
    assert result.path == str(tmp_path / "real" / "sub" / "clip_00001_.mp4")


def test_unwritable_output_dir_names_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError) as info:
        next_output_path(str(blocker / "out"), "clip", "mp4")
    assert info.value.input_name == "output_dir" and "--output-directory" in str(info.value)


def test_atomic_write_renames_on_success(tmp_path):
    final = tmp_path / "clip.mp4"
    with atomic_write_path(str(final)) as temp:
        assert os.path.dirname(temp) == str(tmp_path)
        assert os.path.basename(temp).startswith(".") and temp.endswith(".mp4")
        with open(temp, "wb") as handle:
            handle.write(b"done")
        assert not final.exists()
    assert final.read_bytes() == b"done"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_atomic_write_cleans_up_on_error_and_keeps_old_file(tmp_path):
    final = tmp_path / "clip.mp4"
    final.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write_path(str(final)) as temp:
            with open(temp, "wb") as handle:
                handle.write(b"half")
            raise KeyboardInterrupt
    assert final.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_atomic_write_cleans_up_when_writer_removed_temp(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write_path(str(tmp_path / "clip.mp4")) as temp:
            os.unlink(temp)
            raise ValueError("writer failed")
    assert os.listdir(tmp_path) == []


def test_atomic_write_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError) as info:
        with atomic_write_path(str(blocker / "clip.mp4"), input_name="output_path"):
            pass
    assert info.value.input_name == "output_path"
    assert os.listdir(tmp_path) == ["file"]
