"""A worker process for the scale tests: ``run_worker`` until idle or signalled.

    python worker_child.py ARTIFACT_DIR --postgres DSN SCHEMA [--lease-ttl S]
    python worker_child.py ARTIFACT_DIR --sqlite PATH [--lease-ttl S]

The provider key comes from ``$OPENAI_API_KEY``. Prints ``ready`` once the
storage is open and, at the end, the :class:`WorkerReport` as one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from batchor import LocalArtifactStore, PostgresStorage, SQLiteStorage, Storage, run_worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifacts")
    parser.add_argument("--postgres", nargs=2, metavar=("DSN", "SCHEMA"))
    parser.add_argument("--sqlite")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--forever", action="store_true", help="do not stop when idle")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    storage: Storage = (
        PostgresStorage(args.postgres[0], schema=args.postgres[1])
        if args.postgres
        else SQLiteStorage(path=args.sqlite)
    )
    print("ready", flush=True)
    report = run_worker(
        storage,
        LocalArtifactStore(args.artifacts),
        poll_interval=args.poll_interval,
        until_idle=not args.forever,
        lease_ttl=args.lease_ttl,
    )
    print(json.dumps(dataclasses.asdict(report)), flush=True)


if __name__ == "__main__":
    main()
