"""The example workspace served for real: ``dagster dev -w workspace.yaml`` (the
dagster-webserver plus the daemon that ticks sensors and dequeues runs) in a
subprocess with its own ``DAGSTER_HOME``, driven over GraphQL as the UI does, and
through the UI itself in Chromium: the Python factory's jobs and the YAML
component's (``defs/ticket_routing/defs.yaml``)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
LOCATION = "batchor_example"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_SECONDS = 120
RUN_SECONDS = 150


@dataclass(frozen=True)
class Webserver:
    url: str
    log: Path
    example_home: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(what: str, condition: Callable[[], Any], timeout: float, server: Webserver) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; dagster dev log:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    dagster_home = tmp_path_factory.mktemp("dagster-home")
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    example_home = tmp_path_factory.mktemp("example-home")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "BATCHOR_EXAMPLE_HOME": str(example_home),
        "BATCHOR_EXAMPLE_PORT": str(free_port()),
    }
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    log = dagster_home / "dagster-dev.log"
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        str(REPOSITORY / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=dagster_home,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Webserver(url=f"http://127.0.0.1:{port}", log=log, example_home=example_home)
    try:

        def location_loaded() -> bool:
            assert process.poll() is None, f"dagster dev exited:\n{server.log_tail()}"
            try:
                return bool(server.graphql("{ assetNodes { id } }")["assetNodes"])
            except (urllib.error.URLError, OSError, AssertionError, KeyError):
                return False

        wait_for("the example code location to load", location_loaded, STARTUP_SECONDS, server)
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""

LATEST_MATERIALIZATION = """
query Latest($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on PathMetadataEntry { path }
        }
      }
    }
  }
}
"""

SENSOR_TICKS = """
query Ticks($name: String!) {
  sensorOrError(sensorSelector: {
    repositoryLocationName: "batchor_example", repositoryName: "__repository__", sensorName: $name
  }) {
    ... on Sensor { sensorState { status ticks(limit: 20) { status runKeys } } }
  }
}
"""

ASSET_NODE = """
query Node($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      owners { ... on TeamAssetOwner { team } }
      assetObservations(limit: 20) {
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
      assetChecksOrError {
        ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
      }
    }
  }
}
"""

RUN_TAGS = """
query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { tags { key value } } } }
"""


def launch(server: Webserver, keys: list[str], checks: dict[str, list[str]]) -> str:
    """Materialize ``keys`` and ``checks`` ({asset: [check names]}) as the UI's launch
    button does; the Dagster run id."""
    launched = server.graphql(
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": [key]} for key in keys],
                    "assetCheckSelection": [
                        {"assetKey": {"path": [asset]}, "name": name}
                        for asset, names in checks.items()
                        for name in names
                    ],
                },
                "mode": "default",
                "runConfigData": {},
                "executionMetadata": {"tags": []},
            }
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id: str = launched["run"]["runId"]
    return run_id


def finished(server: Webserver, run_id: str) -> str:
    def status() -> str | None:
        value: str = server.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        return value if value in ("SUCCESS", "FAILURE", "CANCELED") else None

    result: str = wait_for(f"run {run_id}", status, RUN_SECONDS, server)
    return result


def asset_node(server: Webserver, key: str) -> dict[str, Any]:
    node: dict[str, Any] = server.graphql(ASSET_NODE, {"path": [key]})["assetNodeOrError"]
    return node


def observations(server: Webserver, key: str) -> list[dict[str, Any]]:
    return [
        {
            entry["label"]: next((v for k, v in entry.items() if k != "label"), None)
            for entry in observation["metadataEntries"]
        }
        for observation in asset_node(server, key)["assetObservations"]
    ]


def latest_materialization(server: Webserver, key: str) -> dict[str, Any] | None:
    data = server.graphql(LATEST_MATERIALIZATION, {"path": [key]})
    materializations = data["assetOrError"].get("assetMaterializations") or []
    if not materializations:
        return None
    event = materializations[0]
    metadata = {}
    for entry in event["metadataEntries"]:
        values = [value for name, value in entry.items() if name != "label"]
        metadata[entry["label"]] = values[0] if values else None
    return {"run_id": event["runId"], "metadata": metadata}


@pytest.mark.slow
def test_the_ui_api_lists_the_pipeline_and_the_sensor_delivers_the_results(
    webserver: Webserver,
) -> None:
    nodes = webserver.graphql("{ assetNodes { assetKey { path } groupName isPartitioned } }")
    assets = {
        node["assetKey"]["path"][0]: (node["groupName"], node["isPartitioned"])
        for node in nodes["assetNodes"]
    }
    assert assets == {
        "support_tickets": ("support", False),
        "ticket_triage_batch": ("support", False),
        "ticket_triage_results": ("support", False),
        "triage_summary": ("support", False),
        "regional_tickets": ("support_by_region", True),
        "regional_triage_batch": ("support_by_region", True),
        "regional_triage_results": ("support_by_region", True),
        "ticket_routing_batch": ("support_routing", False),
        "ticket_routing_results": ("support_routing", False),
    }

    launched = webserver.graphql(
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [
                        {"path": ["support_tickets"]},
                        {"path": ["ticket_triage_batch"]},
                    ],
                    "assetCheckSelection": [],
                },
                "mode": "default",
                "runConfigData": {},
                "executionMetadata": {"tags": []},
            }
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def run_finished() -> str | None:
        status: str = webserver.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert wait_for("the submit run", run_finished, RUN_SECONDS, webserver) == "SUCCESS"
    submitted = latest_materialization(webserver, "ticket_triage_batch")
    assert submitted is not None and submitted["run_id"] == run_id
    batchor_run_id = submitted["metadata"]["batchor_run_id"]
    assert submitted["metadata"]["items"] == 200

    # The daemon ticks ticket_triage_sensor (on by default in the example): it steps
    # the batchor run and, once it is terminal, requests the results asset.
    results = wait_for(
        "the sensor to materialize ticket_triage_results",
        lambda: latest_materialization(webserver, "ticket_triage_results"),
        RUN_SECONDS,
        webserver,
    )
    assert results["metadata"]["batchor_run_id"] == batchor_run_id
    assert results["metadata"]["status"] == "completed"
    assert (results["metadata"]["rows"], results["metadata"]["failed"]) == (200, 0)
    table = pq.read_table(results["metadata"]["path"])
    assert table.num_rows == 200
    assert set(table.column("status").to_pylist()) == {"completed"}
    tags = {
        tag["key"]: tag["value"]
        for tag in webserver.graphql(RUN_TAGS, {"runId": results["run_id"]})["runOrError"]["tags"]
    }
    assert tags["dagster/sensor_name"] == "ticket_triage_sensor"
    assert tags["dagster/run_key"] == batchor_run_id
    ticks = webserver.graphql(SENSOR_TICKS, {"name": "ticket_triage_sensor"})["sensorOrError"]
    run_keys = [key for tick in ticks["sensorState"]["ticks"] for key in tick["runKeys"]]
    assert run_keys == [batchor_run_id]


@pytest.mark.slow
def test_the_yaml_component_materializes_with_checks_and_progress_observations(
    webserver: Webserver,
) -> None:
    run_id = launch(
        webserver,
        ["support_tickets", "ticket_routing_batch", "ticket_routing_results"],
        {"ticket_routing_results": ["failure_rate", "coverage", "cost_budget"]},
    )

    assert finished(webserver, run_id) == "SUCCESS"
    results = latest_materialization(webserver, "ticket_routing_results")
    assert results is not None and results["run_id"] == run_id
    assert (results["metadata"]["rows"], results["metadata"]["failed"]) == (200, 0)
    assert results["metadata"]["openai.gpt-4.1-mini.calls"] == 200
    table = pq.read_table(results["metadata"]["path"])
    assert {"team", "needs_human_reply"} <= set(table.column_names)
    node = asset_node(webserver, "ticket_routing_results")
    checks = {
        check["name"]: check["executionForLatestMaterialization"]["status"]
        for check in node["assetChecksOrError"]["checks"]
    }
    assert checks == {
        "failure_rate": "SUCCEEDED",
        "coverage": "SUCCEEDED",
        "cost_budget": "SUCCEEDED",
    }
    assert node["owners"] == [{"team": "support"}]
    # The daemon ticks ticket_routing_sensor: it records the run's progress on the
    # submit asset's page.
    observed = wait_for(
        "an observation of ticket_routing_batch",
        lambda: observations(webserver, "ticket_routing_batch"),
        RUN_SECONDS,
        webserver,
    )
    assert observed[0]["batchor_run_id"] == results["metadata"]["batchor_run_id"]
    assert observed[0]["status"] == "completed" and observed[0]["percent_terminal"] == 100.0


@pytest.mark.slow
@pytest.mark.browser
def test_materialize_all_succeeds_and_the_components_checks_and_progress_show(
    webserver: Webserver, tmp_path: Path
) -> None:
    """Materialize all in the Python job's asset graph; then the YAML job's pages (it
    was materialized by the test above) show its checks and its progress observations."""
    if not CHROMIUM.exists():
        if os.environ.get("BATCHOR_REQUIRE_BROWSER"):
            pytest.fail(f"BATCHOR_REQUIRE_BROWSER is set but {CHROMIUM} does not exist")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{webserver.url}/locations/{LOCATION}/asset-groups/support")
            expect(page.get_by_text("ticket_triage_results", exact=True)).to_be_visible(
                timeout=30_000
            )
            dismiss_community_dialog(page)
            page.screenshot(path=tmp_path / "asset-graph.png")

            page.get_by_role("button", name="Materialize all").click()
            toast = page.get_by_text("Launched run")
            expect(toast).to_be_visible(timeout=30_000)
            page.get_by_role("link", name="View", exact=True).click()
            page.wait_for_url("**/runs/**")

            expect(page.get_by_text("Success", exact=True).first).to_be_visible(
                timeout=RUN_SECONDS * 1000
            )
            page.screenshot(path=tmp_path / "run-succeeded.png")

            page.goto(f"{webserver.url}/assets/ticket_routing_results?view=checks")
            for check in ("failure_rate", "coverage", "cost_budget"):
                expect(page.get_by_text(check, exact=True).first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
            page.screenshot(path=tmp_path / "component-checks.png")

            page.goto(f"{webserver.url}/assets/ticket_routing_batch?view=events")
            expect(page.get_by_text("Observed", exact=True).first).to_be_visible(timeout=30_000)
            page.get_by_text("Observed", exact=True).first.click()
            expect(page.get_by_text("percent_terminal", exact=True)).to_be_visible()
            page.screenshot(path=tmp_path / "component-progress.png")
        finally:
            browser.close()

    results = latest_materialization(webserver, "triage_summary")
    assert results is not None
    assert (tmp_path / "run-succeeded.png").stat().st_size > 0


def dismiss_community_dialog(page: Any) -> None:
    """The first visit shows a "Join the Dagster community" dialog; skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
    except Exception:
        return
    skip.click()
    page.locator(".bp5-overlay-backdrop").wait_for(state="detached", timeout=10_000)
