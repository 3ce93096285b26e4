"""``python -m aiodatabases``: command line entry point (``demo``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiodatabases",
        description="aiodatabases command line tools.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="show concurrency, event loop and transaction behaviour on a live database",
        description=(
            "Run the demo on URL, or on a temporary SQLite file if no URL is given. "
            "With a URL it creates and drops the table 'aiodatabases_demo'."
        ),
    )
    demo.add_argument("url", nargs="?", metavar="URL", help="database URL (sqlite or postgresql)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; usage errors exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    # Imported here so that "--help" works even without the drivers installed.
    from ._demo import run_demo, shown, url_problem

    url: str | None = args.url
    if url is not None and (problem := url_problem(url)) is not None:
        parser.error(f"cannot run the demo on {shown(url)}: {problem}")
    return run_demo(url)


if __name__ == "__main__":
    sys.exit(main())
