"""Shared fixtures. Kept generic: anything specific to one test area lives next to those tests.

`comfy_server` (session): one real, unmodified ComfyUI (TALKINGHEAD_COMFYUI_DIR) serving this pack,
shared by tests/integration and tests/browser. Without TALKINGHEAD_COMFYUI_DIR those tests are
skipped with the reason, so `pytest tests/unit` works anywhere; `make test` (and CI) set it.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy_server import ARTIFACTS_DIR, ComfyServer, comfyui_dir_or_reason  # noqa: E402

# Signing keys (the local C2PA identity Mux makes on first use) go to a folder of this test run, not
# the user's ~/.config; ComfyUI servers started by the tests inherit it.
if "TALKINGHEAD_CONFIG_DIR" not in os.environ:
    import tempfile

    os.environ["TALKINGHEAD_CONFIG_DIR"] = tempfile.mkdtemp(prefix="talkinghead-test-config-")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """tests/artifacts/: logs, screenshots and media kept after the run (git-ignored)."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    path, reason = comfyui_dir_or_reason()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-ComfyUI tests: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def comfy_server(comfyui_dir, artifacts_dir, tmp_path_factory, request):
    """A started ComfyUI with the pack loaded; stopped at the end of the session, whatever happens.

    The server runs with the interpreter given in TALKINGHEAD_COMFYUI_PYTHON, else this one (the
    test venv, which holds ComfyUI's requirements)."""
    server = ComfyServer(comfyui_dir, tmp_path_factory.mktemp("comfy-base"),
                         python=os.environ.get("TALKINGHEAD_COMFYUI_PYTHON") or sys.executable,
                         log_path=artifacts_dir / "comfyui-server.log")
    request.addfinalizer(server.stop)
    atexit.register(server.stop)  # also on an interrupted session
    server.start(timeout=float(os.environ.get("TALKINGHEAD_COMFYUI_START_TIMEOUT", "120")))
    print(f"\n[comfy_server] ComfyUI ready at {server.url} in {server.start_seconds:.1f} s "
          f"(log: {server.log_path})")
    return server
