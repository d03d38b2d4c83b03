"""`pip install .` gives an importable package whose pipeline needs neither ComfyUI nor torch."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BLOCK_TORCH_AND_COMFY = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'comfy', 'comfy_api', 'folder_paths', 'server', 'execution'):
            raise ImportError('blocked for the test: ' + name)
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (built,) = out.glob("talkinghead-*.whl")
    return built


def test_wheel_holds_the_package_workflows_web_and_console_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "talkinghead = talkinghead.nodes.headless.cli:main" in archive.read(entry_points).decode()
    for expected in ("talkinghead/__init__.py", "talkinghead/pipeline/publish/mux.py", "talkinghead/pipeline/speech/speak.py",
                     "talkinghead/nodes/registry.py", "talkinghead/web/talkinghead.js",
                     "talkinghead/workflows/api/talking_head.api.json",
                     "talkinghead/workflows/Talking head from a portrait and recorded speech.json",
                     "talkinghead/workflows/Talking head from a portrait and recorded speech.jpg"):
        assert expected in names
    # every module of every stage package (a package missing from pyproject's list would be left out)
    shipped = [p.relative_to(REPO).as_posix() for folder in ("pipeline", "nodes") for p in (REPO / folder).rglob("*")
               if p.suffix in (".py", ".json", ".toml", ".gz") and "__pycache__" not in p.parts]
    missing = [path for path in shipped if f"talkinghead/{path}" not in names]
    assert missing == []
    assert not any(name.startswith("talkinghead/tests/") for name in names)


def test_installed_pipeline_imports_and_works_without_torch_or_comfyui(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    script = BLOCK_TORCH_AND_COMFY + """
import talkinghead, talkinghead.pipeline.publish.mux, talkinghead.pipeline.speech.speak, talkinghead.nodes.headless.cli as cli
assert talkinghead.__file__.startswith(sys.argv[1]), talkinghead.__file__
from talkinghead.pipeline.speech.speak import speak
spoken = speak("One two.")
assert spoken.audio.duration_s > 0.3 and len(spoken.timings.words) == 2
assert cli.main(["voices"]) == 0
try:
    talkinghead.NODE_CLASS_MAPPINGS
except ImportError as exc:
    print("nodes need torch:", exc)
"""
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "en-us" in done.stdout and "nodes need torch" in done.stdout
