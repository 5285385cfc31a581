"""The real ``dg`` command on a temporary project, as a data engineer uses it: list the
component, scaffold a job, check and list the definitions, and see a bad file refused.

``dg`` runs in its own interpreter: the one of this virtualenv, where batchor-dagster
is installed and registers ``batchor_dagster`` under ``dagster_dg_cli.registry_modules``.
One project serves every step (each ``dg`` call takes seconds).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

DG = Path(sys.executable).with_name("dg")
COMPONENT = "batchor_dagster.BatchorComponent"

PYPROJECT = """
[project]
name = "tickets_project"
version = "0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "tickets_project"
code_location_name = "tickets_project"
"""

DEFINITIONS = """
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

ROWS = """
import dagster as dg
import pyarrow as pa


@dg.asset
def support_tickets() -> pa.Table:
    return pa.table({"ticket_id": ["T1", "T2"], "text": ["Where is my parcel?", "Refund!"]})
"""


def dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = project.parent / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        [str(DG), *args],
        cwd=project,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "tickets_project"
    package = root / "tickets_project"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(textwrap.dedent(DEFINITIONS))
    (package / "defs" / "support_tickets.py").write_text(textwrap.dedent(ROWS))
    return root


@pytest.mark.slow
def test_dg_lists_scaffolds_checks_and_lists_the_component(project: Path) -> None:
    listed = dg(project, "list", "components", "--json")
    assert listed.returncode == 0, listed.stderr
    components = {item["key"]: item["summary"] for item in json.loads(listed.stdout)["items"]}
    assert components[COMPONENT].startswith("Send each row of an upstream table or file")

    scaffolded = dg(
        project,
        "scaffold",
        "defs",
        COMPONENT,
        "ticket_triage",
        "--upstream",
        "support_tickets",
        "--item-id-column",
        "ticket_id",
        "--prompt-column",
        "text",
    )
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    defs_yaml = project / "tickets_project" / "defs" / "ticket_triage" / "defs.yaml"
    written = yaml.safe_load(defs_yaml.read_text())
    assert written["type"] == COMPONENT
    assert written["attributes"]["upstream"] == "support_tickets"
    assert written["attributes"]["prompt_column"] == "text"
    assert written["attributes"]["storage"] == "sqlite:///.batchor/runs.sqlite3"

    checked = dg(project, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    listed_defs = dg(project, "list", "defs", "--json")
    assert listed_defs.returncode == 0, listed_defs.stderr
    definitions = json.loads(listed_defs.stdout)
    assets = {asset["asset_key"]: asset for asset in definitions["assets"]}
    assert set(assets) == {"support_tickets", "ticket_triage_batch", "ticket_triage_results"}
    assert assets["ticket_triage_results"]["dependency_keys"] == ["ticket_triage_batch"]
    assert "ticket_triage/defs.yaml" in assets["ticket_triage_batch"]["source"]
    assert {sensor["name"] for sensor in definitions["sensors"]} == {"ticket_triage_sensor"}
    assert {"batchor_ticket_triage", "batchor_parquet_io_manager_ticket_triage"} <= {
        resource["name"] for resource in definitions["resources"]
    }

    defs_yaml.write_text(defs_yaml.read_text().replace("item_id_column:", "itm_id_column:"))
    refused = dg(project, "check", "yaml")
    assert refused.returncode != 0
    report = refused.stdout + refused.stderr
    assert "ticket_triage/defs.yaml" in report
    assert "attributes.itm_id_column" in report
