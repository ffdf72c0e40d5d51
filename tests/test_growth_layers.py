"""growth/ is layered: no module imports one that imports it back, and nothing in it
reaches up into the rest of roomfuse's pipeline or evaluation."""
import ast
from pathlib import Path

import roomfuse.growth

GROWTH = Path(roomfuse.growth.__file__).parent


def imports(path: Path) -> set[str]:
    """growth/ modules that ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("roomfuse.growth."):
            found.add(node.module.split(".")[2])
    return found


def graph() -> dict[str, set[str]]:
    mods = {p.stem: p for p in GROWTH.glob("*.py")}
    return {name: imports(p) & set(mods) for name, p in mods.items()}


def test_no_import_cycle_within_growth():
    deps = graph()
    assert deps["nca_grower"] and deps["batch"], "the import parser found nothing"
    done, stack = set(), []

    def visit(mod):
        assert mod not in stack, "import cycle: " + " -> ".join(stack[stack.index(mod):] + [mod])
        if mod in done:
            return
        stack.append(mod)
        for dep in sorted(deps[mod]):
            visit(dep)
        stack.pop()
        done.add(mod)
    for mod in sorted(deps):
        visit(mod)


def test_the_layers_point_one_way():
    deps = graph()
    for low, high in (("model", "rule"), ("rule", "nca_grower"), ("staging", "nca_grower"),
                      ("tiles", "nca_grower"), ("cuda_graph", "nca_grower"), ("nca_grower", "batch")):
        assert low in deps[high], f"{high} should build on {low}"
        assert high not in deps[low], f"{low} imports {high}, above it"
    for leaf in ("model", "tiles", "cuda_graph", "scores"):
        assert not deps[leaf] - {"model"}, f"{leaf} imports {deps[leaf]}"


def roomfuse_imports(path: Path, package: str) -> set[str]:
    """Top-level roomfuse modules (or subpackages) that a module in ``package`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0 and node.module and node.module.startswith("roomfuse."):
            found.add(node.module.split(".")[1])
        elif node.level >= 1:
            parts = package.split(".")[1:][:len(package.split(".")) - node.level]
            target = parts + (node.module.split(".") if node.module else [a.name for a in node.names][:1])
            if target:
                found.add(target[0])
    return found


def test_growth_does_not_reach_up_into_what_builds_on_it():
    """Nothing in growth/ imports a roomfuse module that (directly or through others)
    imports growth: evaluation, the pipeline, the server, the tools."""
    root = GROWTH.parent
    uses: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("").parts
        top = rel[0]
        package = ".".join(("roomfuse",) + rel[:-1])
        uses.setdefault(top, set()).update(roomfuse_imports(path, package) - {top})
    above = {"growth"}
    while True:
        more = {m for m, deps in uses.items() if deps & above} - above
        if not more:
            break
        above |= more
    above.discard("growth")
    assert {"evaluate", "pipeline"} <= above, above
    for path in GROWTH.glob("*.py"):
        wrong = roomfuse_imports(path, "roomfuse.growth") & above
        assert not wrong, f"growth/{path.name} imports roomfuse.{sorted(wrong)}, which build on growth"
