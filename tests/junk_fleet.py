"""A fleet of many junk node names with a few rows each, as a budget stress: names with
quotes, braces, newlines and unicode; 3 rows per node at 60 s steps with jitter; each
node's newest sample a different number of seconds ago, so the budget's order is known."""

from __future__ import annotations

import random
import time

from psycopg import sql

from exporter.store import Store

JUNK = "\"'{}\\\n=,é漢🙂 -_.:/"


def junk_names(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n:
        length = rng.randint(4, 90)
        chars = [rng.choice(JUNK) if rng.random() < 0.3 else rng.choice("abcdefxyz0123456789")
                 for _ in range(length)]  # fmt: skip
        names.add(f"{len(names)}-" + "".join(chars))
    return sorted(names)


def load_junk(store: Store, n: int, now: float | None = None) -> dict[str, int]:
    """Write the fleet; returns {node: newest sample_time}."""
    now = int(time.time() if now is None else now)
    rng = random.Random(n)
    newest: dict[str, int] = {}
    columns = ("sample_time", "node_name", "node_flag", "cpu_total_pct", "mem_available_mb",
               "mem_total_mb", "load_1m")  # fmt: skip
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        store.table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with store.write() as cur, cur.copy(statement) as copy:
        for name in junk_names(n):
            last = now - rng.randint(0, 240)  # inside the 5-minute current window
            newest[name] = last
            for k in range(3):
                t = last - 60 * k - rng.randint(0, 5)
                if k == 0:
                    t = last
                copy.write_row((t, name, True, rng.uniform(0, 100), rng.uniform(100, 900),
                                1024.0, rng.uniform(0, 4)))  # fmt: skip
    return newest
