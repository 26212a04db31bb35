"""Risk's resident memory with a book of N accounts of P positions each.

Risk decides from memory (``services/risk/book.py``): a replica holds every account of
its shard. This measures what that costs, as the process itself reports it::

    python tools/risk_memory.py                          # 100,000 accounts x 3 positions, SQLite in a temp dir
    python tools/risk_memory.py --accounts 20000 --positions 3 --database-url postgresql://.../db
    python tools/risk_memory.py --profile                # also: what the book's objects cost, by source line
    python tools/risk_memory.py --shards 3               # Risk as replica 0 of 3: its third of the accounts

Method: a fresh store is migrated; Risk (``python -m services.risk``, one replica, the
real process) is started on it empty, and its ``VmRSS`` is read from
``/proc/<pid>/status`` once it serves (it loads its book before it reports SERVING);
it is stopped. Then ``accounts x positions`` rows are written to ``positions`` (the
ledger's positions, as Risk's own ledger writes them: non-zero quantity, cost basis,
realised PnL, commission), Risk is started again, its log line ``risk book loaded: N
accounts`` is checked, and ``VmRSS`` (and the peak, ``VmHWM``) is read the same way.
The figure is the difference, per account and per position. ``--profile`` loads the
same rows into a :class:`~services.risk.book.Book` in this process under
``tracemalloc`` and prints what the book's objects take, by the line that allocated
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.common.identities import provision_local  # noqa: E402
from services.cli.stack import ServiceProcess  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "BNBUSDT", "AVAXUSDT")
SECRET = "risk-memory-tool-secret-0123456789abcdef"


@dataclasses.dataclass
class Sample:
    rss: int  # bytes
    peak: int  # bytes (VmHWM)
    seconds_to_serve: float
    accounts_loaded: int | None


def fill_store(url: str, accounts: int, positions: int) -> None:
    """Migrate ``url`` and write ``accounts x positions`` rows to ``positions``."""
    from services.store.engine import make_engine
    from services.store.migrate import upgrade
    from services.store.models import positions_table

    if positions > len(SYMBOLS):
        raise SystemExit(f"--positions is at most {len(SYMBOLS)}")
    engine = make_engine(url, environ={"TESSERA_SQLITE_SYNCHRONOUS": "OFF"})
    try:
        upgrade(engine)
        now = dt.datetime.now(dt.timezone.utc)
        prices = (65000, 3200, 150, 0.6, 0.45, 0.15, 600, 35)
        draw = random.Random(accounts * 31 + positions)
        rows = []
        with engine.begin() as connection:
            for n in range(accounts):
                for k in range(positions):
                    # Values as a real ledger holds them: every one its own (nothing for an
                    # implementation to share), a position, its cost, PnL and fees so far.
                    quantity = Decimal(draw.randrange(1, 5_000_000)) / 10_000 * draw.choice((1, -1))
                    commission = Decimal(draw.randrange(1, 10**8)) / 10**6
                    cost = (abs(quantity) * Decimal(str(prices[k])) * Decimal(draw.uniform(0.9, 1.1))).quantize(
                        Decimal("0.00000001"))
                    rows.append({
                        "account": f"acct-{n:07d}", "market_type": "FUTURES", "symbol": SYMBOLS[k],
                        "quantity": quantity,
                        "cost_basis": cost, "average_entry_price": (cost / abs(quantity)).quantize(Decimal("1E-8")),
                        "realised_pnl": Decimal(draw.randrange(-10**9, 10**9)) / 10**4,
                        "commission": commission, "fees": {"USDT": str(commission)},
                        "updated_time": now - dt.timedelta(seconds=draw.randrange(10**7), microseconds=n),
                        "version": draw.randrange(1, 1000),
                    })
                if len(rows) >= 30_000:
                    connection.execute(positions_table.insert(), rows)
                    rows = []
            if rows:
                connection.execute(positions_table.insert(), rows)
    finally:
        engine.dispose()


def status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def measure(url: str, log_dir: Path, shards: int = 1, settle: float = 1.0) -> Sample:
    """Start Risk on ``url`` (replica 0 of ``shards``), read its memory once it serves, stop it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TESSERA_", "AIS_"))}
    env.update({"AIS_RISK_HMAC_SECRET": SECRET, "TESSERA_DATABASE_URL": url, "TESSERA_RISK_PORT": "0",
                "TESSERA_HOST": "127.0.0.1", "TESSERA_METRICS_PORT": "off", "TESSERA_ACCESS_LOG": "false",
                "PYTHONUNBUFFERED": "1", "TESSERA_RISK_SHARDS": str(shards), "TESSERA_RISK_SHARD": "0",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))})
    env.update(provision_local(log_dir / "auth"))  # identities on, as deployed
    risk = ServiceProcess("risk", env, log_dir)
    started = time.monotonic()
    risk.start()
    try:
        risk.wait_ready(600)
        ready = time.monotonic() - started
        time.sleep(settle)  # the first book sync and ledger flush
        assert risk.pid is not None
        sample = Sample(status_bytes(risk.pid, "VmRSS"), status_bytes(risk.pid, "VmHWM"), ready, None)
    finally:
        code = risk.stop(30)
    if code != 0:
        raise RuntimeError(f"risk exited {code}: {risk.stderr()[-2000:]}")
    for line in risk.stderr().splitlines() + risk.stdout().splitlines():
        if "risk book loaded:" in line:
            message = json.loads(line)["message"] if line.startswith("{") else line
            sample.accounts_loaded = int(message.split("risk book loaded:", 1)[1].split()[0])
    return sample


def profile(url: str, top: int, shards: int = 1) -> tuple[int, list[str]]:
    """The bytes a :class:`Book` of the store's positions (replica 0's of ``shards``)
    holds, traced, and its top lines."""
    from services.risk.book import Book
    from services.risk.limits import RiskLimits
    from services.store.engine import make_engine
    from services.store.risk_state import load

    engine = make_engine(url)
    limits = RiskLimits.from_env({})
    now = dt.datetime.now(dt.timezone.utc)
    try:
        from services.store.codec import Codec

        codec = Codec(engine.dialect.name)
        tracemalloc.start(4)
        before = tracemalloc.take_snapshot()
        from services.risk.sharding import Sharding

        book = Book(limits, Sharding(0, shards).owns)
        with engine.connect() as connection:
            snapshot = load(connection, codec, now=now, approved_since=now, window_start=now, reset=now,
                            owns=book.owns)
        book.load_positions(snapshot.positions)
        del snapshot
        traced = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        engine.dispose()
    stats = after.compare_to(before, "lineno")[:top]
    lines = [f"{stat.size_diff / 1e6:8.1f} MB {stat.count_diff:>9} objects  {stat.traceback[0]}" for stat in stats]
    assert len(book.accounts) >= 0  # the book stays alive until here
    return traced, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--positions", type=int, default=3, help="positions per account (symbols), at most 8")
    parser.add_argument("--database-url", help="an empty database (default: a SQLite file in a temp directory)")
    parser.add_argument("--shards", type=int, default=1,
                        help="run Risk as replica 0 of this many: its book holds its shard's accounts only")
    parser.add_argument("--profile", action="store_true", help="also trace the book's allocations in this process")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tessera-risk-memory-") as scratch:
        work = Path(scratch)
        url = args.database_url or f"sqlite:///{work / 'risk-memory.db'}"
        fill_store(url, 0, 0)
        empty = measure(url, work / "empty", args.shards)
        fill_store(url, args.accounts, args.positions)
        loaded = measure(url, work / "loaded", args.shards)
        traced = lines = None
        if args.profile:
            traced, lines = profile(url, args.top, args.shards)

    from services.risk.sharding import shard_of

    owned = sum(1 for n in range(args.accounts) if shard_of(f"acct-{n:07d}", args.shards) == 0)
    book = loaded.rss - empty.rss
    positions = owned * args.positions
    figures = {
        "accounts": args.accounts, "shards": args.shards, "accounts_owned": owned, "positions": positions,
        "accounts_loaded": loaded.accounts_loaded,
        "empty_rss_mb": round(empty.rss / 2**20, 1), "loaded_rss_mb": round(loaded.rss / 2**20, 1),
        "loaded_peak_mb": round(loaded.peak / 2**20, 1), "book_rss_mb": round(book / 2**20, 1),
        "bytes_per_account": round(book / max(owned, 1)), "bytes_per_position": round(book / max(positions, 1)),
        "seconds_to_serve_empty": round(empty.seconds_to_serve, 2),
        "seconds_to_serve_loaded": round(loaded.seconds_to_serve, 2),
    }
    if traced is not None:
        figures["book_traced_mb"] = round(traced / 2**20, 1)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"Risk, replica 0 of {args.shards}, {args.accounts:,} accounts x {args.positions} positions in the "
              f"store ({loaded.accounts_loaded:,} accounts in its book):")
        print(f"  resident (VmRSS) empty   {figures['empty_rss_mb']:8.1f} MiB  (serving after "
              f"{figures['seconds_to_serve_empty']} s)")
        print(f"  resident (VmRSS) loaded  {figures['loaded_rss_mb']:8.1f} MiB  (serving after "
              f"{figures['seconds_to_serve_loaded']} s; peak VmHWM {figures['loaded_peak_mb']} MiB)")
        print(f"  the book                 {figures['book_rss_mb']:8.1f} MiB  = {figures['bytes_per_account']} B per "
              f"account, {figures['bytes_per_position']} B per position")
        if lines is not None:
            print(f"  traced in the book (tracemalloc): {figures['book_traced_mb']} MiB; by line:")
            for line in lines:
                print("   ", line)
    if loaded.accounts_loaded != owned:
        print(f"risk loaded {loaded.accounts_loaded} accounts, not the {owned} of its shard", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
