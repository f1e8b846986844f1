"""The layout's promises (ARCHITECTURE.md): one declaration per method, options checked up front, no
import cycles, no method named outside ``methods/``."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO, invoke

from mattecli import methods, weights
from mattecli.methods.base import EngineOptions, MethodOptions

PACKAGE = REPO / "mattecli"


# ----------------------------------------------------------------------------- one declaration
def test_every_manifest_variant_is_declared_by_exactly_one_method():
    manifest = weights.load_manifest(REPO / "weights_manifest.json")
    declared = {}
    for spec in methods.specs():
        for v in spec.all_variants():
            assert v.name not in declared, f"{v.name} declared twice"
            declared[v.name] = spec.name
    assert set(declared) == set(manifest.variants())
    for name, method in declared.items():
        assert manifest.get(name).method == method  # the manifest and the spec agree on the owner
        assert weights.get_architecture(name).variant == name  # plugged into mattecli.weights


def test_the_cli_help_and_bench_read_the_specs():
    import typer

    from mattecli.cli import app

    matte = typer.main.get_command(app).commands["matte"]
    helps = {p.name: p.help or "" for p in matte.params}
    for spec in methods.specs():
        assert spec.name in helps["method"]
        assert ", ".join(spec.strategies) in helps["strategy"]  # --strategy lists each method's own
    several = [s for s in methods.specs() if len(s.variants) > 1]
    assert several and all(", ".join(v.name for v in s.variants) in helps["variant"] for s in several)
    from mattecli.benchmark.reports import published_for

    assert published_for("sim", "comp1k") == [p for p in methods.get("sim").published if p.dataset == "comp1k"]
    assert published_for("nope", "comp1k") == []


# ----------------------------------------------------------------------------- options checked up front
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "msia", "--save-trimap"], "method msia predicts no trimap; drop --save-trimap"),
        (["-m", "cf", "-t", "TRI", "--device", "cuda"], "method cf runs on the CPU only; --device cuda does not apply"),
        (["-m", "cf", "-t", "TRI", "--device", "bogus"], "unknown device 'bogus'"),
        (["-m", "knn", "-t", "TRI", "--precision", "fp8"], "--precision must be one of fp32, fp16, bf16, not 'fp8'"),
        (["-m", "cf", "-t", "TRI", "--precision", "bf16"], "method cf computes in fp32 only; --precision bf16"),
        (["-m", "knn", "-t", "TRI", "--compile"], "method knn has no network to compile; drop --compile"),
        (["-m", "cf", "-t", "TRI", "--batch-size", "4"], "method cf solves one tile at a time; --batch-size"),
        (["-m", "aim", "--variant", "sim-simd"], "--variant of method aim must be one of aim, not 'sim-simd'"),
        (["-m", "aim", "--precision", "fp8"], "--precision must be one of fp32, fp16, bf16, not 'fp8'"),
        (["-m", "shm", "--scales", "1,2"], "method shm defines no multi-scale fusion; drop --scales"),
        (["-m", "sim", "-t", "TRI", "--weights", "absent.pth"], "--weights absent.pth does not exist"),
    ],
)
def test_options_a_method_cannot_honour_are_usage_errors_before_any_work(runner, tmp_path, args, message):
    """Each was a per-file failure or silently ignored before (e.g. msia --save-trimap failed every
    file with an AttributeError; cf ignored --device cuda and --precision fp8)."""
    args = [str(EXAMPLES / "trimaps") if a == "TRI" else a for a in args]
    out = tmp_path / "out"
    result = invoke(runner, ["matte", EXAMPLES / "images", out, *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in lines[0] and len(lines) <= 2 and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_resolve_fills_every_default_from_the_spec():
    r = methods.get("shm").resolve(MethodOptions(device="cpu"))
    assert (r.variant.name, r.strategy, r.halo, r.scales) == ("shm-mindspore", "resize", 96, None)
    r = methods.get("shm").resolve(MethodOptions(device="cpu", variant="shm"))
    assert (r.variant.name, r.strategy, r.halo) == ("shm", "paper", 128)
    r = methods.get("aim").resolve(MethodOptions(device="cpu", engine=EngineOptions(scales="0.25,1", tile_overlap=8)))
    assert (r.strategy, r.scales, r.halo) == ("hybrid", (0.25, 1.0), 8)
    r = methods.get("sim").resolve(MethodOptions(device="cpu"))
    assert r.weights_to_fetch() == ("sim-comp1k", "sim-classifier")
    r = methods.get("sim").resolve(MethodOptions(device="cpu", companion_weights={"sim-classifier": Path("x")}))
    assert r.weights_to_fetch() == ("sim-comp1k",)
    assert methods.get("cf").resolve(MethodOptions()).weights_to_fetch() == ()


# ----------------------------------------------------------------------------- imports
def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The mattecli modules a module's code imports, wherever the import statement is (functions too)."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {owner(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                found.add(owner(full) if full in modules else owner(node.module))
    return {m for m in found if m and m.startswith("mattecli")}


def test_no_import_cycles_even_inside_functions():
    modules = _modules()
    graph = {m: _imports(ast.parse(p.read_text()), modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_weights_and_runtime_import_no_method():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith(("mattecli.weights", "mattecli.runtime")):
            imported = _imports(ast.parse(path.read_text()), modules)
            assert not any(m.startswith("mattecli.methods") for m in imported), name


def test_no_module_outside_methods_tests_a_method_name():
    names = "|".join(re.escape(n) for n in methods.list_methods())
    compare = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("methods/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if compare.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


def test_the_manifest_names_only_declared_methods():
    data = json.loads((REPO / "weights_manifest.json").read_text())
    assert {e["method"] for e in data["checkpoints"]} <= set(methods.list_methods())


def test_io_modules_are_a_leaf():
    """``mattecli.io``'s modules import nothing of mattecli but constants, errors, units and each other (the
    package's ``__init__`` only re-exports them)."""
    modules = _modules()
    allowed = ("mattecli.constants", "mattecli.errors", "mattecli.units", "mattecli.io.")
    for name, path in modules.items():
        if name.startswith("mattecli.io."):
            imported = _imports(ast.parse(path.read_text()), modules)
            assert all(m.startswith(allowed) for m in imported), (name, sorted(imported))


def test_the_weights_modules_import_no_cli_no_pipeline_and_no_io():
    """The weights package sits under the methods and beside the shared leaves: it reports through typed
    errors and callbacks (a tqdm-compatible class for bars), never through the CLI or a pipeline."""
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("mattecli.weights"):
            imported = _imports(ast.parse(path.read_text()), modules)
            assert not any(m.startswith(("mattecli.cli", "mattecli.pipelines", "mattecli.io")) for m in imported), (
                name,
                sorted(imported),
            )


def test_the_benchmark_package_is_one_room():
    """``mattecli.benchmark`` (datasets, metrics, runs, reports) is imported by no module of the package but the
    CLI's ``bench`` command (the repository's ``bench/`` scripts and the tests use it from outside), and it
    imports only downwards: methods, runtime, weights, io and the shared leaves, never a command, a pipeline
    or a backend."""
    modules = _modules()
    below = ("mattecli.methods", "mattecli.runtime", "mattecli.weights", "mattecli.io", "mattecli.manifests",
             "mattecli.errors", "mattecli.constants", "mattecli.units", "mattecli.hub", "mattecli.trimap")  # fmt: skip

    def within(module: str, packages: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in packages)

    assert "mattecli.benchmark.run" in modules and "mattecli.benchmark.metrics" in modules
    for name, path in modules.items():
        imported = _imports(ast.parse(path.read_text()), modules)
        if within(name, ("mattecli.benchmark",)):
            upward = sorted(m for m in imported if m != "mattecli" and not within(m, ("mattecli.benchmark", *below)))
            assert upward == [], (name, upward)  # "mattecli" itself: its __version__
        elif name != "mattecli.cli.bench":
            assert not any(within(m, ("mattecli.benchmark",)) for m in imported), name
