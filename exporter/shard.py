"""Splitting a fleet between exporter replicas: `--shard I/N` serves only the nodes whose
name hashes to shard I of N, so N exporters (each scraped by Prometheus) share the work.

The hash is PostgreSQL's `hashtextextended(node_name, 0)`, the function behind hash
partitioning of text keys, so it is evaluated where the rows are (on a Citus worker too)
and is stable across PostgreSQL versions. Every node belongs to exactly one shard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

ALL = sql.SQL("TRUE")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written on the command line
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 1 <= self.index <= self.count):
            raise ValueError(f"shard {self} does not exist: use I/N with 1 <= I <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`2/4` -> Shard(2, 4)."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"--shard {text!r} is not I/N (for example 1/3)")
        return cls(int(match.group(1)), int(match.group(2)))

    def predicate(self, column: str = "node_name") -> sql.Composable:
        """SQL that is true for the rows of this shard's nodes."""
        if self.count == 1:
            return ALL
        return sql.SQL("(mod(hashtextextended({c}, 0) & {mask}, {n}) = {i})").format(
            c=sql.Identifier(column),
            mask=sql.Literal(2**63 - 1),  # non-negative, so mod is in [0, N)
            n=sql.Literal(self.count),
            i=sql.Literal(self.index - 1),
        )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
