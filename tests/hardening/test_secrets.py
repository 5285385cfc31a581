"""A key embedded in the API address is used, and written nowhere.

The local server accepts only the key in ``OPENAI_BASE_URL``'s userinfo, so the run
completing proves it reached the client; afterwards no byte of anything batchor
wrote (database, artifacts, exports, manifest) and no line it printed holds it, or
the second secret riding in the query string.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.cli_kit import Cli, deterministic_environment, run_concurrently
from tests.files_kit import readable_bytes

from batchor.testing import LocalBatchServer

URL_KEY = "sk-in-the-url-userinfo-7f3a9c"
QUERY_KEY = "sk-in-the-url-query-51d0e2"


def test_a_key_in_the_base_url_is_used_and_stored_nowhere(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text("id,text\nt1,refund\nt2,delivery\n")
    with LocalBatchServer(api_key=URL_KEY) as server:
        address = server.base_url.replace("http://", f"http://user:{URL_KEY}@")
        cli = Cli(
            tmp_path,
            deterministic_environment(
                OPENAI_BASE_URL=f"{address}?api-key={QUERY_KEY}",
                OPENAI_API_KEY="sk-another-key-the-server-refuses",
                BATCHOR_HOME=str(tmp_path / "home"),
                BATCHOR_STORAGE="sqlite:///runs.sqlite3",
            ),
        )
        started = cli(
            "start", "tickets.csv", "--id-column", "id", "--prompt-column", "text",
            "--model", "gpt-4.1", "--run-id", "keyed", "--wait",
        )  # fmt: skip
        outcomes = run_concurrently(
            {
                "results": (cli, ["results", "keyed", "-o", "results.jsonl"]),
                "artifacts": (cli, ["artifacts", "export", "keyed", "exported"]),
                "status": (cli, ["status", "keyed", "--json"]),
            }
        )

    printed = "".join(o.stdout + o.stderr for o in [started, *outcomes.values()])
    for secret in (URL_KEY, QUERY_KEY):
        assert secret not in printed
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in readable_bytes(path), path
    assert started.code == 0, started
    assert all(outcome.code == 0 for outcome in outcomes.values()), outcomes
    assert (tmp_path / "exported" / "keyed" / "manifest.json").is_file()
