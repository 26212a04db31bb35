"""The store's writer alone: CPU per order of Risk's decisions written in group commits.

Writes approved orders (the order and its two events, as Risk stores a decision) through
:class:`services.store.database.Database` on a fresh SQLite file, ``--group`` orders per
``write_many`` (one group commit each), after ``--prefill`` orders written first and not
measured (a store that has grown), and prints the writer thread's CPU time per order
(``/proc/self/task/TID/stat``) and the wall time per order. ``--ids v4`` makes the order
ids (and the client order ids made from them) random instead of time-ordered, as they
were before :func:`services.domain.new_id` made version 7 UUIDs::

    python tools/writer_bench.py --group 8 --orders 4000 --prefill 50000 --ids v7
    python tools/writer_bench.py --group 8 --orders 4000 --prefill 50000 --ids v4

Run both in the same minutes and compare them; a figure alone says little on a shared
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.domain import MarketType, Order, OrderType, Side, new_id  # noqa: E402
from services.store import Store  # noqa: E402
from services.store.database import Database  # noqa: E402
from services.store.order_sets import NEW_ORDERS  # noqa: E402


def approved(make_id) -> Order:  # type: ignore[no-untyped-def]
    order = Order(order_id=make_id(), client_order_id="tsr-" + make_id().replace("-", "")[:28], account="acct-1",
                  venue="paper", market_type=MarketType.FUTURES, symbol="BTCUSDT", side=Side.BUY,
                  order_type=OrderType.LIMIT, quantity=Decimal("0.01"), price=Decimal("65000"))
    order.record_approval(order.order_time)
    return order


def thread_cpu_seconds(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(db: Database, make_id, group: int, orders: int, prefill: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    for _ in range(prefill // 500):
        await db.write_many(NEW_ORDERS, [approved(make_id) for _ in range(500)])
    batches = [[approved(make_id) for _ in range(group)] for _ in range(max(1, orders // group))]
    await db.write_many(NEW_ORDERS, [approved(make_id)])  # the writer thread is running
    writers = [t for t in threading.enumerate() if t is not threading.main_thread() and t.native_id]
    before = {t.native_id: thread_cpu_seconds(t.native_id) for t in writers}
    start = time.perf_counter()
    for batch in batches:
        await db.write_many(NEW_ORDERS, batch)
    wall = time.perf_counter() - start
    cpu = max(thread_cpu_seconds(native_id) - spent for native_id, spent in before.items())
    written = len(batches) * group
    return cpu / written * 1e6, wall / written * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=8, help="orders per group commit (default %(default)s)")
    parser.add_argument("--orders", type=int, default=4000, help="orders measured (default %(default)s)")
    parser.add_argument("--prefill", type=int, default=50000, help="orders written first (default %(default)s)")
    parser.add_argument("--ids", choices=("v7", "v4"), default="v7", help="order ids (default %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        store = Store.from_url(f"sqlite:///{directory}/writer.db", migrate=True)
        db = Database(store)
        try:
            cpu, wall = asyncio.run(measure(db, new_id if args.ids == "v7" else lambda: str(uuid.uuid4()), args.group,
                                            args.orders, args.prefill))
        finally:
            db.close()
            store.dispose()
    print(f"ids {args.ids}, {args.group} per commit, after {args.prefill} orders: "
          f"writer CPU {cpu:.0f} us/order, wall {wall:.0f} us/order")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
