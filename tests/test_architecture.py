"""The fleet's shape: services never import each other, the shared kit imports no service, every service
is layered (import-linter contracts, which see imports inside functions too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a dev dependency; `make install` installs it"
    result = subprocess.run(
        [lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_every_service_and_churns_ml_have_a_layers_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = {
        container
        for contract in config["contracts"]
        if contract["type"] == "layers"
        for container in contract["containers"]
    }
    services = {f"services.{p.parent.name}" for p in (ROOT / "services").glob("*/app.py")}
    assert services | {"services.churn.ml"} <= layered
    # Imports under TYPE_CHECKING count as imports; none of the contracts leaves them out.
    assert not any(c.get("exclude_type_checking_imports") for c in [config, *config["contracts"]])


def test_the_contracts_see_imports_inside_functions() -> None:
    # The churn CLI imports its training code only inside its commands (``crm --help`` stays fast);
    # import-linter's graph must hold that import, or a layer broken inside a function would go unseen.
    graph = grimp.build_graph("services", "shared", cache_dir=None)
    assert "services.churn.ml.training" in graph.find_modules_directly_imported_by("services.churn.cli")
    source = (ROOT / "services" / "churn" / "cli.py").read_text()
    assert "\nfrom services.churn.ml.training" not in source  # so the edge above is from a function body
