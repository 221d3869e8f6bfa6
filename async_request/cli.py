"""`async-request`: the package's command line; no manage.py needed (a FastAPI-only project).

    async-request broker  [--host 127.0.0.1] [--port 9092]
    async-request worker  --settings myproject.settings [--pool prefork|threads|solo|asyncio]
                          [--concurrency N] [--hostname NAME] [--lanes a,b]
    async-request workers --settings myproject.settings [--consumers-count 2]
                          [--restart-delay-sec 1.0] [--pool prefork] [--concurrency 1]
                          [--lanes a,b]

The same as `python -m async_request ...`.

- `broker`: the embedded Kafka broker for development (`embedded` extra; async_request/embedded.py),
  in the foreground; it prints the KAFKA_BOOTSTRAP_SERVERS value to use; Ctrl-C stops it.
- `worker`: one Celery worker, as `manage.py kafka_consumer_single` (it retires after
  KAFKA_CONSUMER_LIFETIME_SEC when that is set). It logs at KAFKA_LOG_LEVEL, INFO by default:
  its tasks, the lanes it serves (`--lanes`, default every lane; async_request/lanes.py),
  `ready.`, then a line per task.
- `workers`: N supervised workers, as `manage.py kafka_consumer_multiple`; SIGTERM or SIGINT
  stops them all.

`worker` and `workers` set DJANGO_SETTINGS_MODULE from `--settings` (default: the environment's),
run `django.setup()` and then the same functions as the management commands
(async_request/workers.py). The working directory is importable, as under manage.py or
`celery -A`; `--pythonpath DIR` adds another directory (also for the children of `workers`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

from async_request.embedded import DEFAULT_HOST, DEFAULT_PORT, run_broker
from async_request.exceptions import AsyncRequestError, ConfigurationError
from async_request.workers import LANES_HELP, POOLS, run_worker, run_workers

PROG = "async-request"


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _django_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", metavar="MODULE",
                        help="your Django settings module, e.g. myproject.settings "
                             "(default: env DJANGO_SETTINGS_MODULE)")
    parser.add_argument("--pythonpath", metavar="DIR", action="append", default=[],
                        help="a directory to import your project from (the working directory "
                             "always is); may be repeated")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `async-request`."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Workers and a development broker for async-request.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = commands.add_parser(
        "broker", help="run the embedded Kafka broker (tansu) for development, in the foreground",
        description="Run the embedded Kafka broker (tansu, in memory) in the foreground. For "
                    "development only: everything is lost when it stops. Ctrl-C stops it.")
    broker.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    broker.add_argument("--port", type=_positive_int, default=DEFAULT_PORT,
                        help="port to listen on (%(default)s)")

    worker = commands.add_parser(
        "worker", help="run one worker (manage.py kafka_consumer_single)",
        description="Run one Celery worker that replays deferred requests.")
    _django_options(worker)
    worker.add_argument("--pool", default="prefork", choices=POOLS)
    worker.add_argument("--concurrency", type=_positive_int, default=None,
                        help="processes or threads (default: Celery's, the number of CPUs)")
    worker.add_argument("--hostname", default=None, help="worker node name (default: celery@host)")
    worker.add_argument("--lanes", default=None, help=LANES_HELP)

    workers = commands.add_parser(
        "workers", help="run N supervised workers (manage.py kafka_consumer_multiple)",
        description="Run N worker processes; replace those that retire or crash; stop all on "
                    "SIGTERM/SIGINT.")
    _django_options(workers)
    workers.add_argument("--consumers-count", type=_positive_int, default=2)
    workers.add_argument("--restart-delay-sec", type=float, default=1.0)
    workers.add_argument("--pool", default="prefork", choices=POOLS)
    workers.add_argument("--concurrency", type=_positive_int, default=1)
    workers.add_argument("--lanes", default=None, help=LANES_HELP)
    return parser


def setup_django(settings_module: str | None, pythonpath: Sequence[str] = ()) -> str:
    """Make the project importable, set DJANGO_SETTINGS_MODULE, `django.setup()`; return it.

    Raises ConfigurationError when no settings module is named or it cannot be found.
    """
    extra = [os.path.abspath(path) for path in pythonpath]
    if extra:  # the children of `workers` inherit it
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [*extra, *filter(None, [os.environ.get("PYTHONPATH")])])
    for path in reversed([*extra, os.getcwd()]):
        if path not in sys.path:
            sys.path.insert(0, path)
    module = settings_module or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        raise ConfigurationError(
            "no Django settings module: pass --settings myproject.settings "
            "(or set DJANGO_SETTINGS_MODULE)")
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ConfigurationError(
            f"settings module {module!r} (--settings or DJANGO_SETTINGS_MODULE) cannot be "
            f"imported from {os.getcwd()}: run from the directory that holds it, or add "
            "that directory with --pythonpath")
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    import django

    django.setup()
    return module


def main(argv: Sequence[str] | None = None) -> int:
    """Run `async-request` with argv (default: the command line); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "broker":
            return run_broker(args.port, args.host)
        setup_django(args.settings, args.pythonpath)
        if args.command == "worker":
            run_worker(args.pool, args.concurrency, args.hostname, args.lanes)
        else:
            run_workers(args.consumers_count, args.pool, args.concurrency,
                        restart_delay=args.restart_delay_sec, lanes=args.lanes)
    except AsyncRequestError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
