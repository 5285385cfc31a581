"""The ``batchor`` command line: the operator's subset of the Python API.

``app`` is the Typer application (one module per concern: :mod:`.app` the
commands, :mod:`.inputs` input files and prompts, :mod:`.settings` storage
URLs and credentials, :mod:`.display` what is printed); ``main`` is the
console-script entry point. See ``docs/cli.md``.
"""

from batchor.cli.app import ExitCode, app, main

__all__ = ["ExitCode", "app", "main"]
