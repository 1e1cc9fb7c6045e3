"""`python -m botify.spark {ab,train} ...`: the two commands always on the Spark engine."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from botify.cli.engine import run_spark


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m botify.spark {ab,train} ...`: the entry points' parsers plus
    --spark-master, always on the Spark engine."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("ab", "train"):
        print(
            "usage: python -m botify.spark {ab,train} [--spark-master URL] ARGS...\n"
            "  ab: the flags of python -m botify.ab; train: python -m botify.train's "
            "(models top_pop, i2i)",
            file=sys.stderr,
        )
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    command, rest = argv[0], argv[1:]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--spark-master", default=None)
    pre.add_argument("--engine", default="spark")
    ns, rest = pre.parse_known_args(rest)
    parser: Any
    if command == "ab":
        from botify.cli.ab import build_parser as ab_parser

        parser = ab_parser()
    else:
        from botify.cli.train import build_parser as train_parser

        parser = train_parser()
    args = parser.parse_args(rest)
    args.spark_master = ns.spark_master
    args.engine = "spark"
    return run_spark(command, args)
