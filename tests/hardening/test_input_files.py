"""CSV inputs: text in another encoding is a usage error naming the file, the line and
what to do, wherever the bad bytes are; a field of any size is read."""

from __future__ import annotations

from pathlib import Path

from tests.cli.cli_kit import Cli, run_concurrently

START = ("--id-column", "id", "--prompt-column", "text", "--model", "gpt-4.1")


def test_text_that_is_not_utf8_is_a_usage_error_saying_what_to_do(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "latin1-header.csv").write_bytes(
        "id,text,r\u00e9sum\u00e9\n1,a,b\n".encode("latin-1")
    )
    (tmp_path / "utf16.csv").write_text("id,text\n1,hello\n", encoding="utf-16")
    (tmp_path / "latin1-row3.csv").write_bytes("id,text\n1,ok\n2,caf\u00e9\n".encode("latin-1"))

    outcomes = run_concurrently(
        {
            name: (cli, ["start", f"{name}.csv", *START, "--run-id", name])
            for name in ("latin1-header", "utf16", "latin1-row3")
        }
        | {"given": (cli, ["start", "latin1-row3.csv", *START, "--encoding", "latin-1"])}
    )

    header, utf16, row3 = (outcomes[name] for name in ("latin1-header", "utf16", "latin1-row3"))
    assert (header.code, utf16.code, row3.code) == (2, 2, 2)
    assert "latin1-header.csv, line 1: not valid utf-8-sig text" in header.error_lines[0]
    assert "give its encoding with --encoding" in header.error_lines[0]
    assert "utf16.csv, line 1: " in utf16.error_lines[0]
    assert "the file is UTF-16 (it starts with a UTF-16 byte-order mark)" in utf16.error_lines[0]
    assert "latin1-row3.csv, row 3: not valid utf-8 text" in row3.error_lines[0]
    assert "batchor start --encoding" in row3.error_lines[0]
    assert "Traceback" not in header.stderr + utf16.stderr + row3.stderr
    assert outcomes["given"].code == 0, outcomes["given"]


def test_a_csv_field_over_128_kib_is_ingested(cli: Cli, tmp_path: Path) -> None:
    long_text = "word " * 40_000  # 200,000 characters
    (tmp_path / "long.csv").write_text(f"id,text\n1,{long_text}\n2,short\n")

    outcome = cli("start", "long.csv", *START, "--run-id", "long", "--json")

    assert outcome.code == 0, outcome
    assert outcome.json()["total_items"] == 2
