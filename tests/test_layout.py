"""The house rules that keep the code easy to extend: verbs are peers over shared services (no verb imports
another verb), imports flow pipelines → lightning_modules → datamodules, and no module grows past 300
lines."""

import ast

import pytest

from tests.helpers import ROOT

# The stages and commands of `reprozoo`, one module (or package) each; cli dispatches to them.
VERBS = set(
    "fetch shard train evaluate report publish preflight tune submit repro retrain bench ui listing "
    "deps".split()
)
# What the verbs share; a service imports no verb.
SERVICES = set(
    "config params_files validation tracking registry runs claims paths errors processes choices timing "
    "checks imports evidence markers stage_tries repro_here".split()
)


def imported_modules(path):
    """Every module `path` imports, at the top or inside a function (lazy imports count too)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def pipelines_module(path):
    """`pipelines/bench/loader.py` → "bench"; `pipelines/train.py` → "train"."""
    return path.relative_to(ROOT / "pipelines").parts[0].removesuffix(".py")


# The command line: its entry points, and the warm server whose forks run a stage's `reprozoo` (it imports the
# verbs, as the cli does).
CLI = {"__init__", "__main__", "cli", "cli_cluster", "warm"}


def test_every_pipelines_module_is_a_verb_a_service_or_the_cli():
    names = {pipelines_module(p) for p in (ROOT / "pipelines").rglob("*.py")}
    assert names - CLI == VERBS | SERVICES


@pytest.mark.parametrize(
    "path", sorted((ROOT / "pipelines").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_verb_imports_another_verb_and_no_service_imports_a_verb(path):
    own = pipelines_module(path)
    if own in CLI:
        return
    used = {name.split(".")[1] for name in imported_modules(path) if name.startswith("pipelines.")}
    verbs = (used & VERBS) - {own}
    assert not verbs, (
        f"{path.relative_to(ROOT)} ({'verb' if own in VERBS else 'service'}) imports the verb(s) {verbs}"
    )


@pytest.mark.parametrize("package", ["lightning_modules", "datamodules"])
def test_imports_flow_one_way(package):
    forbidden = {"lightning_modules": ("pipelines",), "datamodules": ("pipelines", "lightning_modules")}[
        package
    ]
    for path in (ROOT / package).rglob("*.py"):
        bad = [n for n in imported_modules(path) if n.split(".")[0] in forbidden]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_module_passes_300_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for folder in ("pipelines", "lightning_modules", "datamodules")
        for p in (ROOT / folder).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert not long, f"split these where a split reads better: {long}"


def test_each_stage_depends_on_exactly_the_code_its_experiment_imports():
    """deps/ matches the import graph (else run `reprozoo deps`); shared modules reach only their users, and
    every experiment's stages find their paper's and dataset's folders (a new experiment needs nothing
    generated)."""
    from lightning_modules import PAPERS
    from pipelines.config import load_params
    from pipelines.deps import DEPS, linked, stale

    params = load_params(ROOT / "params.yaml")
    assert not stale(ROOT), "deps/ is out of date; run `reprozoo deps` and commit it"
    users = {
        path.name: {
            folder.name
            for folder in (ROOT / DEPS / "papers").iterdir()
            if ROOT / "lightning_modules" / path.name in linked(folder)
        }
        for path in (ROOT / "lightning_modules").glob("*.py")
    }
    assert users["detection.py"] == {"fpn", "mask_rcnn"}
    assert users["pix2pixhd.py"] == {"everybody_dance_now"}
    assert users["resnet.py"] == {"resnet"}
    assert users["paper.py"] == set(PAPERS)  # every paper file states its claims
    for key, section in params.papers.items():
        assert (ROOT / DEPS / "papers" / section.paper).is_dir(), key
        assert (ROOT / DEPS / "datasets" / section.dataset).is_dir(), key
