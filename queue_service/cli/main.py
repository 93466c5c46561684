"""`queue-service`: api, worker, dev, mock-upstream, stats, workers, submit, dead-letters."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from queue_service.cli.submit import add_parser as add_submit_parser
from queue_service.logs import configure_logging
from queue_service.settings import Settings
from queue_service.validation import describe


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    from queue_service.api.app import create_app
    from queue_service.api.auth import Authenticator, KeyFileError

    settings = Settings()
    configure_logging(settings)
    try:
        Authenticator(settings.api_key_tenants, settings.api_keys_file)
    except KeyFileError as exc:
        raise SystemExit(f"queue-service api: {exc}") from None
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )


def _worker(args: argparse.Namespace) -> None:
    if args.check:
        from queue_service.cli.operator import check_workers

        sys.exit(check_workers(Settings()))
    from workers.entry import ResilientWorker, check_configuration, use_uvloop, worker_settings

    overrides = {"concurrency": args.concurrency} if args.concurrency else {}
    settings = Settings(**overrides)
    configure_logging(settings)
    check_configuration(settings)
    queues = (
        frozenset(q.strip() for q in args.queues.split(",") if q.strip()) if args.queues else None
    )
    use_uvloop()
    ResilientWorker(**worker_settings(settings, queues)).run()


def _mock_upstream(args: argparse.Namespace) -> None:
    import uvicorn

    from queue_service.mock_upstream import MockConfig, create_mock_app

    configure_logging(Settings())
    config = MockConfig(
        ttft=args.ttft, token_latency=args.token_latency, rpm=args.rpm, tpm=args.tpm
    )
    uvicorn.run(
        create_mock_app(config), host=args.host, port=args.port, log_config=None, access_log=False
    )


def _stats(args: argparse.Namespace) -> None:
    from queue_service.cli.operator import print_stats

    print_stats(Settings())


def _workers(args: argparse.Namespace) -> None:
    from queue_service.cli.operator import print_workers

    print_workers(Settings())


def _dead_letters(args: argparse.Namespace) -> None:
    from workers.dead_letters import run

    run(Settings(), args.redeliver)


def _dev(args: argparse.Namespace) -> None:
    from queue_service.dev.stack import run_dev

    run_dev(args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queue-service", description="A priority task queue for AI API calls."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="run the HTTP front end under uvicorn")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.set_defaults(run=_api)

    worker = commands.add_parser("worker", help="run one worker process")
    worker.add_argument("--queues", help="comma-separated queue names (default: every queue)")
    worker.add_argument("--concurrency", type=int, help="job slots (default QUEUE_CONCURRENCY)")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 while a worker of this deployment is alive"
    )
    worker.set_defaults(run=_worker)

    dev = commands.add_parser("dev", help="API, a worker, mock upstream (and Redis) in one go")
    dev.add_argument("--port", type=int, default=8080)
    dev.set_defaults(run=_dev)

    mock = commands.add_parser("mock-upstream", help="run the built-in mock model server")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=7860)
    mock.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    mock.add_argument("--token-latency", type=float, default=0.0, help="seconds per token")
    mock.add_argument("--rpm", type=int, help="requests per minute it allows (429 beyond)")
    mock.add_argument("--tpm", type=int, help="tokens per minute it allows (429 beyond)")
    mock.set_defaults(run=_mock_upstream)
    commands.add_parser("stats", help="per-queue figures as a table").set_defaults(run=_stats)
    commands.add_parser("workers", help="live workers").set_defaults(run=_workers)
    dead = commands.add_parser("dead-letters", help="list callbacks given up on")
    dead.add_argument("--redeliver", action="store_true", help="send them all again")
    dead.set_defaults(run=_dead_letters)
    add_submit_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValidationError as exc:  # a QUEUE_* setting is wrong: say which, no traceback
        sys.exit(f"queue-service {args.command}: invalid configuration: {describe(exc)}")
    except KeyboardInterrupt:
        sys.exit(130)
