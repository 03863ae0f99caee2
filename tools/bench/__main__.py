"""python -m tools.bench [NAME ...] [FLAGS]: run the named benchmarks (all when none is named).

Each benchmark prints its figures beside a baseline measured in the same run. Flags after the names go to
each named benchmark; ``python -m tools.bench NAME --help`` lists that benchmark's own flags.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import sys

from tools.bench import help_text

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


def summary(module: str) -> str:
    """The first sentence of a benchmark's docstring, read from its source (importing it would start its
    dependencies: the help must be quick)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as source:
        doc = ast.get_docstring(ast.parse(source.read())) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return help_text(paragraph.split(". ")[0].rstrip("."))


def parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<15} {summary(module)}" for name, module in BENCHMARKS.items())
    p = argparse.ArgumentParser(
        prog="python -m tools.bench",
        usage="%(prog)s [-h] [NAME ...] [FLAGS]",
        description=help_text((__doc__ or "").split("\n\n", 1)[1]).strip(),
        epilog=f"benchmarks:\n{listing}\n\nEach benchmark's own flags: python -m tools.bench NAME --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help (with NAME: that benchmark's flags)")
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all of them)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, rest = p.parse_known_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    if args.help and not args.names:
        p.print_help()
        return 0
    for name in args.names or list(BENCHMARKS):
        if args.help:
            with contextlib.suppress(SystemExit):  # argparse's help exits; the next one's help follows
                importlib.import_module(BENCHMARKS[name]).main(["--help"])
            continue
        print(f"== {name}")
        code = importlib.import_module(BENCHMARKS[name]).main(rest)
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
