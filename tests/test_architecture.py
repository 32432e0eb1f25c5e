"""The package's shape: one installed name, layered engine, no import cycles.

The import graph is read from the source with `ast` (function-level imports
included: hiding an import inside a function does not hide a cycle).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# installed package name -> repository folder (pyproject's package-dir)
FOLDERS = {"llmtui": REPO / "llmtui", "llmtui.engine": REPO / "engine",
           "llmtui.tui": REPO / "tui", "llmtui.presets": REPO / "presets"}
ENGINE_LAYERS = ["errors", "fsutil", "config", "data", "model", "planning", "builder_api", "training",
                 "inference", "api"]


def package_modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    modules = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package (or outside names) that `name` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


@pytest.mark.unit
def test_no_import_cycles(graph):
    internal = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(internal[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(internal):
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.unit
def test_engine_never_imports_a_front_end(graph):
    front = ("llmtui.tui", "llmtui.cli", "llmtui.headless", "textual")
    bad = {m: sorted(d for d in deps if d == "llmtui" or d.startswith(front))
           for m, deps in graph.items() if m.startswith("llmtui.engine")}
    assert {m: d for m, d in bad.items() if d} == {}


@pytest.mark.unit
def test_engine_layers_import_only_downwards(graph):
    """config -> data -> model -> planning -> training -> inference -> api: a layer
    imports only the layers before it (and itself)."""
    def layer(module: str) -> int | None:
        parts = module.split(".")
        if parts[:2] != ["llmtui", "engine"] or len(parts) < 3:
            return None
        return ENGINE_LAYERS.index(parts[2])

    wrong = []
    for module, deps in graph.items():
        mine = layer(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = layer(dep)
            if theirs is not None and theirs > mine:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


@pytest.mark.unit
def test_every_engine_subpackage_says_what_it_owns_and_may_import():
    for sub in ENGINE_LAYERS:
        if not (REPO / "engine" / sub).is_dir():
            continue      # errors, fsutil and api are modules, not subpackages
        doc = ast.get_docstring(ast.parse((REPO / "engine" / sub / "__init__.py").read_text()))
        assert doc and "May import" in doc, sub
        body = ast.parse((REPO / "engine" / sub / "__init__.py").read_text()).body
        assert len(body) == 1, f"engine/{sub}/__init__.py should hold only its docstring"


@pytest.mark.unit
def test_every_package_docstring_lists_each_of_its_modules():
    """The engine's docstring lists its modules and subpackages, each subpackage's its modules,
    one indented line each: a new module cannot go unmentioned."""
    for package in [REPO / "engine", *sorted(p.parent for p in (REPO / "engine").glob("*/__init__.py"))]:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        listed = set(re.findall(r"^    (\w+)", doc, re.MULTILINE))
        parts = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
        parts |= {p.parent.name for p in package.glob("*/__init__.py")}
        assert parts <= listed, f"{package.relative_to(REPO)}/__init__.py leaves out {sorted(parts - listed)}"


@pytest.mark.subprocess
def test_the_installed_distribution_holds_only_llmtui(tmp_path):
    """Build the wheel and read its RECORD: nothing outside `llmtui/` is installed
    (no top-level `engine` or `tui` to clash with a user's modules)."""
    src = tmp_path / "src"
    skip_top = {".git", ".venv", "build", "data", "checkpoints", "tests", "bench"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == REPO
        return {n for n in names if n == "__pycache__" or n.endswith(".egg-info")
                or (top and n in skip_top)}

    shutil.copytree(REPO, src, ignore=ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "wheel").glob("llmtui-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        paths = [line.split(",")[0] for line in zf.read(record).decode().splitlines() if line]
    top = {p.split("/")[0] for p in paths}
    assert {t for t in top if not t.endswith(".dist-info")} == {"llmtui"}
    for expected in ("llmtui/engine/training/trainer.py", "llmtui/engine/inference/export.py",
                     "llmtui/tui/app.py",
                     "llmtui/tui/monitor.tcss", "llmtui/presets/cpu.toml", "llmtui/cli.py"):
        assert expected in paths


@pytest.mark.unit
def test_the_app_and_its_test_double_hold_trainers_by_one_protocol():
    """The real Trainer and the scripted one the app's tests use both satisfy
    TrainerControl, with the same command signature."""
    import inspect

    from fakes import ScriptedTrainer
    from llmtui import load_config
    from llmtui.engine.training.commands import TrainerControl
    from llmtui.engine.training.trainer import Trainer

    cfg = load_config("cpu")
    real, fake = Trainer(cfg), ScriptedTrainer(cfg)
    assert isinstance(real, TrainerControl) and isinstance(fake, TrainerControl)
    for name in ("send", "run"):
        assert (list(inspect.signature(getattr(Trainer, name)).parameters)
                == list(inspect.signature(getattr(ScriptedTrainer, name)).parameters)), name
    factory_params = inspect.signature(ScriptedTrainer).parameters
    assert {"resume_from", "overwrite"} <= set(factory_params)


# imported only where the user asked for them, with a one-line error naming the package to install
OPTIONAL_IMPORTS = {"wandb", "huggingface_hub"}


@pytest.mark.unit
def test_every_outside_import_is_a_runtime_dependency(graph):
    """A documented command must work after the documented install (`pip install .`):
    every third-party module the package imports, at the top or inside a function
    (export_gguf imports gguf there), comes from a [project] dependency, not an extra."""
    import importlib.metadata
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].lower().replace("_", "-")
               for req in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    outside = {dep.split(".")[0] for deps in graph.values() for dep in deps} - {"llmtui"}
    outside -= set(sys.stdlib_module_names) | {"__future__"} | OPTIONAL_IMPORTS
    missing = {}
    for module in sorted(outside):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not dists & runtime:
            missing[module] = sorted(dists)
    assert missing == {}


# Python as a plain `pip install .` leaves it: no editable-install finder, so `import llmtui`
# run from the clone's root finds the repository's llmtui/ folder (the current directory
# comes first on sys.path), whose engine/, tui/ and presets/ stand beside it
WITHOUT_EDITABLE_FINDER = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                           "if not getattr(f, '__module__', '').startswith('__editable__')]; ")


@pytest.mark.subprocess
def test_the_python_api_imports_from_the_clone_root():
    code = WITHOUT_EDITABLE_FINDER + (
        "import llmtui; from llmtui import load_config; cfg = load_config('cpu'); "
        "import llmtui.tui.app; print(llmtui.__file__, cfg.run.name)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(REPO / "llmtui" / "__init__.py")


@pytest.mark.subprocess
@pytest.mark.parametrize("args, shown", [(["--help"], "usage: llmtui"), (["config", "cpu"], "[training]")])
def test_python_dash_m_llmtui_runs_from_the_clone_root(args, shown):
    """What `python -m llmtui ARGS` does, without the editable finder (`config` reads the engine's schema)."""
    code = WITHOUT_EDITABLE_FINDER + (
        f"import runpy; sys.argv = ['llmtui', *{args!r}]; "
        "runpy.run_module('llmtui', run_name='__main__', alter_sys=True)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert shown in proc.stdout
