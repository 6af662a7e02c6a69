"""The least work DESIGN.md's rules ask of any implementation, beside the kernel's: the
"rules floor" of the bridge and macvlan benchmarks.

The issues' floor is the kernel work and nothing else. hostnet must also follow rules
that are not its own choice (DESIGN.md): a socket in the target namespace comes from a
short-lived thread (never by switching a thread that outlives the call), the target is
observed before the plan is made, the plan is journaled before anything is applied,
each op that succeeded is recorded, and the result is recorded after. This module does
exactly that and no more, so that the gap between the two floors is the price of the
rules, and the gap between the rules floor and hostnet is hostnet's own (validation,
policy, IPAM, port allocation, drivers, recovery data):

- ``observe``: a link dump and a main-table route dump over the target's socket, the
  links decoded for their names (what planning reads);
- ``Journal``: SQLite in WAL mode with ``synchronous=NORMAL`` (hostnet's settings), three
  tables with no index but their keys; per connect one write transaction that takes
  the address and records the pending endpoint and the journal with the plan, one
  autocommitted progress update per op but the last (hostnet's executor does the same:
  the closing transaction covers the last), one write transaction that marks the
  endpoint active and drops the journal; per disconnect one transaction that journals
  the teardown, progress likewise, and one that forgets the endpoint, its address and
  the journal.

Nothing here decides anything: the address and the plan are handed in.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path

RTM_GETLINK, RTM_GETROUTE = 18, 26
RT_TABLE_MAIN = 254


def observe(sock: socket.socket) -> list[str]:
    """Dump the target's links and main-table routes; return the link names."""
    from hostnet.backends.netlink import rtnl
    from hostnet.backends.netlink.channel import Channel

    chan = Channel(sock)
    links = [rtnl.link(m) for m in chan.dump(rtnl.ifinfo(), RTM_GETLINK)]
    chan.dump(rtnl.rtmsg(socket.AF_UNSPEC, table=RT_TABLE_MAIN), RTM_GETROUTE)
    return [str(link["name"]) for link in links]


class Journal:
    """A store that journals before acting and records after, and does nothing else."""

    def __init__(self, directory: str | Path) -> None:
        self.conn = sqlite3.connect(
            Path(directory) / "rules.db", isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS journal (id TEXT PRIMARY KEY, plan TEXT, done INTEGER);
            CREATE TABLE IF NOT EXISTS endpoints (id TEXT PRIMARY KEY, data TEXT, state TEXT);
            CREATE TABLE IF NOT EXISTS addresses (address TEXT PRIMARY KEY, owner TEXT);
            """
        )

    def begin(self, endpoint: str, address: str, plan: Sequence[dict[str, object]]) -> str:
        journal = uuid.uuid4().hex
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO addresses VALUES (?, ?)", (address, endpoint))
        data = json.dumps({"address": address})
        c.execute("INSERT INTO endpoints VALUES (?, ?, 'pending')", (endpoint, data))
        c.execute("INSERT INTO journal VALUES (?, ?, 0)", (journal, json.dumps(list(plan))))
        c.execute("COMMIT")
        return journal

    def progress(self, journal: str, done: int) -> None:
        self.conn.execute("UPDATE journal SET done = ? WHERE id = ?", (done, journal))

    def finish(self, journal: str, endpoint: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("UPDATE endpoints SET state = 'active' WHERE id = ?", (endpoint,))
        c.execute("DELETE FROM journal WHERE id = ?", (journal,))
        c.execute("COMMIT")

    def begin_teardown(self, endpoint: str, plan: Sequence[dict[str, object]]) -> str:
        journal = uuid.uuid4().hex
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("UPDATE endpoints SET state = 'deleting' WHERE id = ?", (endpoint,))
        c.execute("INSERT INTO journal VALUES (?, ?, 0)", (journal, json.dumps(list(plan))))
        c.execute("COMMIT")
        return journal

    def forget(self, journal: str, endpoint: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("DELETE FROM endpoints WHERE id = ?", (endpoint,))
        c.execute("DELETE FROM addresses WHERE owner = ?", (endpoint,))
        c.execute("DELETE FROM journal WHERE id = ?", (journal,))
        c.execute("COMMIT")

    def forget_all(self, journal: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("DELETE FROM endpoints")
        c.execute("DELETE FROM addresses")
        c.execute("DELETE FROM journal WHERE id = ?", (journal,))
        c.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
