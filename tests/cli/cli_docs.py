"""Keep ``docs/cli.md`` in step with the real ``--help`` of every ``batchor`` command.

The page embeds each command's help between markers::

    <!-- help: batchor start -->
    ```text
    ...output of `batchor start --help`...
    ```
    <!-- /help -->

Regenerate the blocks (prose around them is kept; a command without a block gets
a new section at the end)::

    python tests/cli/cli_docs.py          # rewrite docs/cli.md
    python tests/cli/cli_docs.py --check  # exit 1 and show a diff if it is stale

Help is rendered in-process by the same Typer app the executable runs, on a fixed
100-column terminal, so the text does not depend on who regenerates it.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import sys
from pathlib import Path

HELP_COLUMNS = "100"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
_BLOCK = re.compile(
    r"<!-- help: (?P<command>[a-z -]+) -->\n```text\n(?P<help>.*?)```\n<!-- /help -->",
    re.DOTALL,
)


def _fix_terminal() -> None:
    os.environ["COLUMNS"] = HELP_COLUMNS
    os.environ["TERM"] = "dumb"
    os.environ["NO_COLOR"] = "1"
    for name in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE", "TERMINAL_WIDTH"):
        os.environ.pop(name, None)


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the app, depth first: ``()``, ``("start",)``, ...
    ``("artifacts", "export")``."""
    import typer

    from batchor.cli import app

    paths: list[tuple[str, ...]] = []

    def visit(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        subcommands = getattr(command, "commands", None)
        if isinstance(subcommands, dict):
            for name, subcommand in subcommands.items():
                visit(subcommand, (*path, name))

    visit(typer.main.get_command(app), ())
    return paths


def render_help(path: tuple[str, ...]) -> str:
    """``batchor PATH --help`` as the executable prints it (trailing spaces removed)."""
    import typer

    from batchor.cli import app

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = typer.main.get_command(app).main(
            [*path, "--help"], prog_name="batchor", standalone_mode=False
        )
    if code not in (0, None):
        raise RuntimeError(f"batchor {' '.join(path)} --help exited {code}")
    return normalize(output.getvalue())


def normalize(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def block_name(path: tuple[str, ...]) -> str:
    return " ".join(("batchor", *path))


def documented_help(document: str) -> dict[str, str]:
    """The help blocks of the page, by command (``"batchor start"``)."""
    return {match["command"]: match["help"] for match in _BLOCK.finditer(document)}


def regenerate(document: str) -> str:
    """``document`` with every help block replaced by the current help output."""
    rendered = {block_name(path): render_help(path) for path in command_paths()}

    def replace(match: re.Match[str]) -> str:
        command = match["command"]
        if command not in rendered:
            return ""  # a command that no longer exists
        return f"<!-- help: {command} -->\n```text\n{rendered[command]}```\n<!-- /help -->"

    updated = _BLOCK.sub(replace, document)
    missing = [command for command in rendered if command not in documented_help(updated)]
    for command in missing:
        updated = updated.rstrip("\n") + (
            f"\n\n## `{command}`\n\n<!-- help: {command} -->\n```text\n"
            f"{rendered[command]}```\n<!-- /help -->\n"
        )
    return updated


def main(arguments: list[str]) -> int:
    _fix_terminal()
    current = DOC_PATH.read_text(encoding="utf-8")
    updated = regenerate(current)
    if "--check" in arguments:
        if updated == current:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                updated.splitlines(keepends=True),
                str(DOC_PATH),
                "regenerated",
            )
        )
        print(f"\n{DOC_PATH} is stale: run python tests/cli/cli_docs.py", file=sys.stderr)
        return 1
    if updated != current:
        DOC_PATH.write_text(updated, encoding="utf-8")
        print(f"updated {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
