"""``python -m tools.bench [NAME ...]``: run the named benchmarks (all when none is named)."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Benchmark name -> module under ``tools.bench`` with a ``main(argv) -> int``.
BENCHMARKS = {
    "token_check": "tools.bench.token_check",
    "stream_put": "tools.bench.stream_put",
    "slow_bodies": "tools.bench.slow_bodies",
    "direct_upload": "tools.bench.direct_upload",
    "compare": "tools.bench.compare",
    "sync_client": "tools.bench.sync_client",
    "notifier": "tools.bench.notifier",
    "commit_cost": "tools.bench.commit_cost",
    "client_scale": "tools.bench.client_scale",
    "metadata_read": "tools.bench.metadata_read",
    "feed_poll": "tools.bench.feed_poll",
    "hashing": "tools.bench.hashing",
    "sustained": "tools.bench.sustained",
    "password_flood": "tools.bench.password_flood",
    "background": "tools.bench.background",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    args, rest = parser.parse_known_args(argv)
    for name in args.names or list(BENCHMARKS):
        print(f"== {name}")
        code = importlib.import_module(BENCHMARKS[name]).main(rest)
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
