"""``insights-app prune --store DIR``: bound a store's size by hand, and drop what no version reads.

The store bounds itself while it is written (the oldest maps go past its bound); this is the
explicit command: delete rows made by other versions of captum, torch or insights-app (this
version never serves them), then the oldest maps until at most ``--max-size`` remain, then
give the space back to the file system.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence

from ..errors import StoreError

UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5g``, ``1048576``: a size in bytes (ValueError otherwise)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise ValueError(f"--max-size {text!r} is not a size (e.g. 500M, 2G)")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{prog} prune", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, metavar="DIR", help="the store directory")
    p.add_argument(
        "--max-size",
        default=None,
        metavar="SIZE",
        help="keep at most this much of maps, the newest (e.g. 500M, 2G; default: the store's bound, 4G)",
    )
    p.add_argument(
        "--keep-other-versions",
        action="store_true",
        help="keep rows made by other versions of captum, torch or insights-app",
    )
    return p


def prune_command(argv: Sequence[str], prog: str, out: Callable[[str], None]) -> int:
    """Run the command; raises ValueError or StoreError with a one-line message on a user mistake."""
    import os
    from pathlib import Path

    from . import software_versions
    from .sqlite import FILE_NAME, Store

    args = build_parser(prog).parse_args(list(argv))
    max_bytes: int | None = None if args.max_size is None else parse_size(args.max_size)
    if not (Path(args.store).expanduser() / FILE_NAME).is_file():
        raise StoreError(f"{args.store} holds no store ({FILE_NAME}); nothing to prune")
    directory = Path(args.store).expanduser()
    read_only = StoreError(f"{args.store} cannot be written (a read-only file system?); nothing is pruned")
    if not (os.access(directory, os.W_OK) and os.access(directory / FILE_NAME, os.W_OK)):
        raise read_only  # before the store is opened (read-only, it would say so in a warning of its own)
    store = Store(args.store)
    if store.read_only:
        store.close()
        raise read_only
    before = store.counts()
    dropped = 0 if args.keep_other_versions else store.drop_other_software(software_versions())
    removed = store.prune(max_bytes)
    compacted = store.compact()
    after = store.counts()
    lines: list[str] = [
        f"{dropped} rows of other versions deleted" if not args.keep_other_versions else "",
        f"{removed} oldest maps deleted",
        f"maps: {before['explanations']} -> {after['explanations']} ({human(before['bytes'])} -> "
        f"{human(after['bytes'])})",
    ]
    if not compacted:
        lines.append("the file keeps its size until no other process has the store open (then run prune again)")
    out("; ".join(line for line in lines if line))
    store.close()
    return 0
