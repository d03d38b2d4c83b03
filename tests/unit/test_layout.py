"""The library's layout stays what docs/ and README promise: one package per stage, stacked without
cycles, each node one hop from its stage. Read from the source with `ast`, so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipeline"
NODES = REPO / "nodes"

#: Which stages each stage may import (core is the bottom; render builds on face, lipsync, prompt).
ALLOWED_STAGE_DEPENDENCIES = {
    "core": set(),
    "prompt": {"core"},
    "speech": {"core"},
    "lipsync": {"core", "speech"},
    "face": {"core"},
    "render": {"core", "face", "lipsync", "prompt", "speech"},
    "publish": {"core", "face"},
    "report": {"core", "face", "lipsync"},
}

#: The stage each node module adapts; every node may also use core (errors, I/O, output paths).
NODE_STAGES = {
    "artifacts": {"report"},
    "loaders": {"speech"},  # Load Speech speaks its sample sentence
    "mux": {"publish"},
    "prompt": {"prompt"},
    "reference": {"face"},
    "sampler": {"render"},
    "speak": {"speech"},
    "visemes": {"lipsync"},
    "watermark": {"publish"},
    "comfy_env": set(),
    "registry": set(),
}

COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "server", "nodes", "execution"}


def _package_parts(path: Path) -> list[str]:
    return list(path.relative_to(REPO).with_suffix("").parts[:-1])


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted module relative to the repository root) for every import in `path`."""
    found = []
    package = _package_parts(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
                if node.module is None:  # from . import a, b: each name may be a module
                    found.extend((node.lineno, ".".join(base + [alias.name])) for alias in node.names)
                else:
                    found.append((node.lineno, ".".join(base)))
            else:
                found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_stage_package_exists_and_holds_modules():
    stages = {p.name for p in PIPELINE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert stages == set(ALLOWED_STAGE_DEPENDENCIES)
    loose = [p.name for p in PIPELINE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside a stage package: {loose}"


@pytest.mark.parametrize("stage", sorted(ALLOWED_STAGE_DEPENDENCIES))
def test_stage_imports_only_the_stages_below_it(stage):
    wrong = []
    for path in _python_files(PIPELINE / stage):
        for line, module in _imported_modules(path):
            parts = module.split(".")
            if parts[0] in ("nodes", "talkinghead") or parts[0] in COMFYUI_MODULES:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module} (pipeline/ never imports "
                             "ComfyUI, nodes/ or itself by absolute name)")
            elif parts[0] == "pipeline" and len(parts) > 1 and parts[1] != stage:
                if parts[1] not in ALLOWED_STAGE_DEPENDENCIES[stage]:
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert wrong == [], "\n".join(wrong)


def test_stage_dependencies_have_no_cycle():
    seen: dict[str, str] = {}

    def visit(stage: str, trail: tuple[str, ...]) -> None:
        assert stage not in trail, f"cycle: {' -> '.join(trail + (stage,))}"
        for below in ALLOWED_STAGE_DEPENDENCIES[stage]:
            visit(below, trail + (stage,))
        seen[stage] = "done"

    for stage in ALLOWED_STAGE_DEPENDENCIES:
        visit(stage, ())
    assert set(seen) == set(ALLOWED_STAGE_DEPENDENCIES)


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PIPELINE.glob("*/__init__.py")) + ["."])
def test_stage_init_is_a_docstring_naming_its_entry_point(package):
    init = (PIPELINE / package / "__init__.py")
    tree = ast.parse(init.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring, f"{init.relative_to(REPO)}: say what the stage does"
    assert len(tree.body) == 1, f"{init.relative_to(REPO)}: only the docstring (no imports, no code)"
    if package != ".":
        assert "entry point" in docstring.lower() and "`" in docstring, \
            f"{init.relative_to(REPO)}: name the entry point"


@pytest.mark.parametrize("node_module", sorted(NODE_STAGES))
def test_node_module_is_one_hop_from_its_stage(node_module):
    path = NODES / f"{node_module}.py"
    allowed = NODE_STAGES[node_module] | {"core"}
    used = {module.split(".")[1] for _, module in _imported_modules(path)
            if module.startswith("pipeline.")}
    assert used <= allowed, f"nodes/{node_module}.py reaches into {sorted(used - allowed)}"
    assert NODE_STAGES[node_module] <= used or not NODE_STAGES[node_module], \
        f"nodes/{node_module}.py does not use its stage {sorted(NODE_STAGES[node_module])}"


def test_every_node_module_is_listed():
    modules = {p.stem for p in NODES.glob("*.py") if p.name != "__init__.py"}
    assert modules == set(NODE_STAGES)


def test_headless_cli_and_batch_do_not_import_each_other():
    cli = NODES / "headless" / "cli.py"
    batch = NODES / "headless" / "batch"
    cli_imports = {m for _, m in _imported_modules(cli)}
    batch_imports = {m for p in _python_files(batch) for _, m in _imported_modules(p)}
    assert "nodes.headless.cli" not in batch_imports
    assert any(m.startswith("nodes.headless.batch") for m in cli_imports)
