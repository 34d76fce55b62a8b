"""``python -m study.proxy``: serve one storage to many workers through Optuna's gRPC proxy.

python -m study.proxy --storage postgresql://USER:PASSWORD@DBHOST:5432/wrn --port 13000
python -m study.run --storage grpc://PROXYHOST:13000 --workers 4 --trials 200

With hundreds of workers, each holding database connections, the database becomes the
bottleneck; the proxy holds one connection pool and caches reads. Workers then use
``--storage grpc://HOST:PORT``.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna

from study.cli import Parser, add_storage_flag, command_parser, int_at_least, run_command
from study.errors import UsageError
from study.storage import open_storage, redact


def build_parser() -> Parser:
    p = command_parser("study.proxy", __doc__)
    add_storage_flag(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0 for other machines, on a trusted network)",
    )
    p.add_argument("--port", type=int_at_least(1), default=13000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port > 65535:
        raise UsageError(f"--port: must be <= 65535, got {args.port}")
    storage = open_storage(args.storage)
    print(f"serving {redact(args.storage)} on grpc://{args.host}:{args.port}", flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    run_command("python -m study.proxy", main)
