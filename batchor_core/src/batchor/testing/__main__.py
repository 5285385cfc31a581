"""``python -m batchor.testing``: serve the local OpenAI Batch server until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from batchor.testing.models import BatchPace
from batchor.testing.server import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_REQUESTS_PER_BATCH,
    LocalBatchServer,
    serve,
)


def _token_limit(text: str) -> tuple[str, int]:
    model, separator, tokens = text.rpartition("=")
    if not separator or not model:
        raise argparse.ArgumentTypeError(f"expected MODEL=TOKENS, got {text!r}")
    try:
        return model, int(tokens.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"TOKENS must be an integer in {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m batchor.testing",
        description="Serve a local OpenAI-compatible Files + Batches API until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="directory for files and batch state (kept across restarts); default: temporary",
    )
    for phase in ("validating", "in-progress", "finalizing", "cancelling"):
        parser.add_argument(
            f"--pace-{phase}",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help=f"seconds a batch spends {phase.replace('-', ' ')} (default 0)",
        )
    parser.add_argument(
        "--token-limit",
        type=_token_limit,
        action="append",
        default=[],
        metavar="MODEL=TOKENS",
        help="enqueued-token limit for a model (repeatable)",
    )
    parser.add_argument("--default-token-limit", type=int, default=None, metavar="TOKENS")
    parser.add_argument("--api-key", default=None, help="require exactly this bearer key")
    parser.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES)
    parser.add_argument(
        "--max-requests-per-batch", type=int, default=DEFAULT_MAX_REQUESTS_PER_BATCH
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    server = LocalBatchServer(
        pace=BatchPace(
            validating=options.pace_validating,
            in_progress=options.pace_in_progress,
            finalizing=options.pace_finalizing,
            cancelling=options.pace_cancelling,
        ),
        token_limits=dict(options.token_limit),
        default_token_limit=options.default_token_limit,
        data_dir=options.data_dir,
        host=options.host,
        port=options.port,
        max_file_bytes=options.max_file_bytes,
        max_requests_per_batch=options.max_requests_per_batch,
        api_key=options.api_key,
    )
    stop = threading.Event()

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_terminate)
    serve(server, announce=lambda line: print(line, flush=True), stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
