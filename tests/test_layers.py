"""The layer contracts (pyproject.toml, ``[tool.importlinter]``) hold, and break when an import breaks them.

``make lint`` (and so ``make test`` and CI) runs ``lint-imports``. Here it runs once on the tree, and once on a
throwaway copy with one forbidden import added per contract: every contract must report it. The forbidden
lists of the client and stack contracts name service's modules one by one (import-linter cannot say "all
but these"), so a test checks they name every module there is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = {
    c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}
#: What the client and the service share, the only modules of service the client may import (directly or not).
PROTOCOL = {"service.codec", "service.content", "service.paths", "service.resources", "service.wire"}

#: One import per contract that breaks it: (file, the line added, the import as the report names it).
BREAKS = {
    "layers": ("service/core/budget.py", "import service.api.problems", "service.core.budget -> service.api.problems"),
    "core": ("service/core/budget.py", "import aiohttp.web", "service.core.budget -> aiohttp"),
    "client": ("tools/sync/plan.py", "import service.settings", "tools.sync.plan -> service.settings"),
    "stack": ("cloudformation/ids.py", "import service.wire", "cloudformation.ids -> service.wire"),
}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(script), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=60)


def service_modules() -> set[str]:
    """Every module of service as import-linter names them (packages api and aws whole, core by module)."""
    names = {f"service.{p.stem}" for p in (ROOT / "service").glob("*.py") if p.stem != "__init__"}
    names |= {"service.api", "service.aws"}
    names |= {f"service.core.{p.stem}" for p in (ROOT / "service" / "core").glob("*.py") if p.stem != "__init__"}
    return names


def test_the_contracts_hold():
    ran = lint_imports(ROOT)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in ran.stdout


def test_the_forbidden_lists_name_every_module_outside_what_is_allowed():
    client = {m for m in CONTRACTS["client"]["forbidden_modules"] if m.startswith("service.")}
    assert client == service_modules() - PROTOCOL - {"service.core.errors", "service.fanout"}
    stack = set(CONTRACTS["stack"]["forbidden_modules"])
    core_modules = {m for m in service_modules() if m.startswith("service.core.")}
    assert stack == (service_modules() - core_modules) - {"service.resources"} | {"service.core"}
    assert set(BREAKS) == set(CONTRACTS)


def test_a_forbidden_import_breaks_each_contract(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in ("service", "tools", "cloudformation"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    intact = lint_imports(tmp_path)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    for path, line, _ in BREAKS.values():
        with (tmp_path / path).open("a") as module:
            module.write(f"\n{line}  # noqa\n")
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"Contracts: 0 kept, {len(CONTRACTS)} broken." in broken.stdout
    for _, _, reported in BREAKS.values():  # each report names the import that broke it
        assert reported in broken.stdout
