"""The embedded state store: one SQLite database (WAL mode) under a state directory.

Where: the ``state_dir`` argument, else $HOSTNET_STATE_DIR, else /var/lib/hostnet.

Concurrency: every write is a ``BEGIN IMMEDIATE`` transaction, so writers from any
number of processes are serialised by SQLite's lock (waiting up to ``timeout`` seconds),
and allocations (addresses, ports) are read-check-insert inside one transaction. WAL
with synchronous=NORMAL survives a killed process (what recovery needs) at ~10 us per
commit; it may lose the last commits on power loss, after which the kernel state is gone
too.

Ownership: everything a setup creates in the store (records, address and port
allocations) carries an ``owner`` id, so rolling back or tearing down is
``forget(owner)``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hostnet import errors

T = TypeVar("T")

SCHEMA_VERSION = 3
RETRYING = 2  # journal.failed: a failed journal some process is retrying right now
#: A row of ``revive`` that is no network: hostnet had turned forwarding on in the host
#: before it restarted (so it may again, whichever Controller makes the networks again)
FORWARDING_ALLOWED = "allow-forwarding"
#: the files a store is made in before it is linked to state.db (LocalStore._create),
#: and how old (s) one must be to be left over from a process killed while making it
_UNFINISHED = ".state.db."
UNFINISHED_AGE = 60.0
#: how many policy decisions the store keeps (the oldest go first)
KEEP_ADMISSIONS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    created INTEGER NOT NULL,          -- 1: hostnet created it, 0: adopted
    owner TEXT NOT NULL,
    state TEXT NOT NULL,               -- pending | active
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idents (   -- which namespace a record is of (not just its name)
    owner TEXT PRIMARY KEY,            -- the namespace's owner ("ns:<name>")
    ident TEXT NOT NULL,               -- Backend.namespace_id: "<boot id>/<netns cookie>"
    mount TEXT                         -- Backend.namespace_mount: the cheap first check
);
CREATE TABLE IF NOT EXISTS revive (   -- networks to make again in a restarted host
    network TEXT PRIMARY KEY,
    host TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (   -- namespaces made for the life of one process
    owner TEXT PRIMARY KEY,            -- the namespace's owner ("ns:<name>")
    name TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL              -- the process's start time (pids are reused)
);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    driver TEXT NOT NULL,
    host TEXT NOT NULL,
    spec TEXT NOT NULL,                -- JSON: the validated NetworkSpec
    data TEXT NOT NULL,                -- JSON: what the driver chose (bridge name...)
    applied TEXT NOT NULL,             -- JSON: the plan that was applied
    state TEXT NOT NULL,
    at REAL NOT NULL,
    UNIQUE (host, name)
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL,             -- network id
    workload TEXT NOT NULL,            -- namespace name or host workload name
    ns TEXT,                           -- namespace (NULL: host networking)
    data TEXT NOT NULL,                -- JSON: ifname, addresses, mac, ports...
    applied TEXT NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    UNIQUE (network, workload)
);
CREATE TABLE IF NOT EXISTS published (  -- ports published on an endpoint after connect
    owner TEXT PRIMARY KEY,            -- "<endpoint id>/<suffix>", as in ports
    endpoint TEXT NOT NULL,
    ports TEXT NOT NULL,               -- JSON: [protocol, host_ip, host_port, container_port]...
    applied TEXT NOT NULL,             -- JSON: the plan that published them
    at REAL NOT NULL,
    asked TEXT NOT NULL DEFAULT '[]'   -- JSON: the -p specs as asked (as_asked)
);
CREATE INDEX IF NOT EXISTS published_by_endpoint ON published (endpoint, at);
CREATE TABLE IF NOT EXISTS addresses (
    pool TEXT NOT NULL,                -- network id (or "subnets" for subnet allocations)
    address TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (pool, address)
);
CREATE TABLE IF NOT EXISTS ports (
    host TEXT NOT NULL,
    protocol TEXT NOT NULL,
    host_ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    owner TEXT NOT NULL,
    workload TEXT NOT NULL,
    PRIMARY KEY (host, protocol, host_ip, port)
);
CREATE INDEX IF NOT EXISTS ports_by_port ON ports (host, protocol, port);
CREATE INDEX IF NOT EXISTS ports_by_owner ON ports (owner);
CREATE INDEX IF NOT EXISTS addresses_by_owner ON addresses (owner);
CREATE INDEX IF NOT EXISTS endpoints_by_workload ON endpoints (workload);
CREATE INDEX IF NOT EXISTS endpoints_by_ns ON endpoints (ns);
CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints (network);
CREATE TABLE IF NOT EXISTS shared (
    host TEXT NOT NULL,
    key TEXT NOT NULL,                 -- e.g. "nft:bridge", "forwarding4"
    owner TEXT NOT NULL,               -- the network that created it (or inherited it)
    applied TEXT NOT NULL,
    PRIMARY KEY (host, key)
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL                -- a decimal integer (IPv6 cursors exceed 64 bits)
);
CREATE TABLE IF NOT EXISTS admissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    host TEXT NOT NULL,
    workload TEXT NOT NULL,
    what TEXT NOT NULL,
    decision TEXT NOT NULL,            -- admitted | denied | warned
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                -- setup | teardown
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,             -- the owning process's start time (pid reuse guard)
    plan TEXT NOT NULL,
    done INTEGER NOT NULL,             -- ops completed
    failed INTEGER NOT NULL DEFAULT 0, -- 1: ended with errors (gc retries), 2: being retried
    at REAL NOT NULL,
    places TEXT NOT NULL DEFAULT '{}'  -- JSON: {namespace: its mount when journaled, "" none}
);
"""


def default_state_dir() -> Path:
    return Path(os.environ.get("HOSTNET_STATE_DIR") or "/var/lib/hostnet")


def as_asked(ports: Any) -> list[list[Any]]:
    """Published ports ([protocol, host IP, host port, container port] each) written as
    the ``-p`` specs that would ask for exactly them: what a record made before hostnet
    kept the specs as asked stands for them."""
    return [[f"{cp}/{p}", h, str(hp)] for p, h, hp, cp in ports]


def _merge_asked(data: dict[str, Any], ports: list[Any], asked: list[Any]) -> None:
    """Add ports published after connect, and the specs as asked for them, to an
    endpoint's ``data``."""
    if "asked" not in data:  # (before its own ports are extended)
        data["asked"] = as_asked(data.get("ports", ()))
    data["asked"].extend(asked or as_asked(ports))
    data.setdefault("ports", []).extend(ports)


def _loads(text: str) -> Any:
    return json.loads(text)


# a network of one host (never another host's, even by id), by its id or its name
_NETWORK_COLUMNS = "SELECT id, name, driver, host, spec, data, state, at FROM networks "
_NETWORK_WHERE = "WHERE host = ? AND (id = ? OR name = ?) ORDER BY id = ? DESC LIMIT 1"
_NETWORK = _NETWORK_COLUMNS + _NETWORK_WHERE
_NETWORK_WITH_PLAN = _NETWORK_COLUMNS.replace(" FROM", ", applied FROM") + _NETWORK_WHERE
_NETWORK_BY_PREFIX = _NETWORK_COLUMNS + "WHERE host = ? AND id >= ? AND id < ? LIMIT 2"

_HEX = re.compile("[0-9a-f]+")
#: The shortest id prefix a network is found by: what `network ls` prints
ID_PREFIX = 12

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _dumps(value: Any) -> str:
    # one encoder for every call: json.dumps with options builds a new one each time
    return _ENCODER.encode(value)


#: how many owners Tx.forget_all deletes with one statement per table (SQLite takes at
#: least 999 parameters; published is asked with each owner twice)
FORGET_CHUNK = 400
#: the tables whose rows belong to an owner, and the column that names it (ports and
#: cursors, which also go by prefix, are Tx.forget_all's own)
_OWNED_BY = (
    ("addresses", "owner"),
    ("endpoints", "id"),
    ("networks", "id"),
    ("revive", "network"),
    ("namespaces", "owner"),
    ("leases", "owner"),
    ("idents", "owner"),
    ("shared", "owner"),
)


def _padded(owners: list[str]) -> list[str]:
    """``owners`` repeated at the end up to one of a few lengths, so that forget_all's
    statements come in a few texts only (SQLite's statement cache holds 128)."""
    size = next(n for n in (1, 8, 64, FORGET_CHUNK) if n >= len(owners))
    return owners + owners[-1:] * (size - len(owners))


def address_cursor(pool: str) -> str:
    """The name of the cursor of an address pool ("<network id>/<subnet>"): where its
    next allocation starts. Tx.forget takes a network's with the network."""
    return f"ip:{pool}"


class Tx:
    """One write transaction. Methods are the store's vocabulary; SQL stays in here."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        #: the cursors this transaction moved: name -> (value before or None, value now)
        self.moved: dict[str, tuple[str | None, str]] = {}
        self._read: dict[str, str | None] = {}  # cursors read, as stored (None: absent)

    # -- generic -----------------------------------------------------------------------

    def forget(self, owner: str) -> None:
        """Delete every record and allocation ``owner`` holds."""
        self.forget_all((owner,))

    def forget_all(self, owners: Collection[str]) -> None:
        """``forget`` each of ``owners``: every table is visited once per
        ``FORGET_CHUNK`` owners, not once per owner (disconnect_all forgets 1000
        endpoints; one by one, that was 11 statements each, several of them scans)."""
        owners = [owners] if isinstance(owners, str) else list(owners)
        for start in range(0, len(owners), FORGET_CHUNK):
            part = _padded(owners[start : start + FORGET_CHUNK])
            marks = ",".join("?" * len(part))
            for table, column in _OWNED_BY:
                self.c.execute(
                    f"DELETE FROM {table} WHERE {column} IN ({marks})",  # noqa: S608 (only ?s)
                    part,
                )
            self.c.execute(
                f"DELETE FROM published WHERE endpoint IN ({marks}) OR owner IN ({marks})",  # noqa: S608
                part + part,
            )
        # Ports published later on an endpoint belong to "<endpoint id>/<suffix>" (a
        # range of the owner index: "0" is the character after "/"), and a network's
        # address cursors are "ip:<network id>/<subnet>" (address_cursor()): nothing
        # allocates from its pools any more. Indexed lookups, one per owner.
        self.c.executemany(
            "DELETE FROM ports WHERE owner = ? OR (owner >= ? || '/' AND owner < ? || '0')",
            [(owner, owner, owner) for owner in owners],
        )
        firsts = [address_cursor(f"{owner}/") for owner in owners]
        self.c.executemany(
            "DELETE FROM cursors WHERE name >= ? AND name < ?",
            [(first, first[:-1] + "0") for first in firsts],
        )

    def next_cursor(self, name: str, default: int) -> int:
        row = self.c.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        self._read[name] = row[0] if row else None
        return int(row[0]) if row else default

    def set_cursor(self, name: str, value: int) -> None:
        if name in self.moved:
            before = self.moved[name][0]
        elif name in self._read:  # read in this transaction: nobody moved it since
            before = self._read[name]
        else:
            row = self.c.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
            before = row[0] if row else None
        self.c.execute(
            "INSERT INTO cursors (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, str(value)),
        )
        self.moved[name] = (before, str(value))

    def forget_orphan_cursors(self) -> int:
        """Delete the address cursors of networks the store no longer has (hostnet before
        session 5 left them when it deleted a network); returns how many."""
        networks = {r[0] for r in self.c.execute("SELECT id FROM networks")}
        names = [
            name
            for (name,) in self.c.execute("SELECT name FROM cursors WHERE name LIKE 'ip:%'")
            if name[3:].split("/")[0] not in networks
        ]
        for name in names:
            self.c.execute("DELETE FROM cursors WHERE name = ?", (name,))
        return len(names)

    def restore_cursors(self, moved: Mapping[str, tuple[str | None, str]]) -> None:
        """Put back the cursors (``Tx.moved``) of a transaction whose work was rolled
        back, unless another allocation has moved them since."""
        for name, (before, after) in moved.items():
            if before is None:
                self.c.execute("DELETE FROM cursors WHERE name = ? AND value = ?", (name, after))
            else:
                self.c.execute(
                    "UPDATE cursors SET value = ? WHERE name = ? AND value = ?",
                    (before, name, after),
                )

    # -- namespaces --------------------------------------------------------------------

    def add_namespace(self, name: str, host: str, created: bool, owner: str) -> None:
        try:
            self.c.execute(
                "INSERT INTO namespaces (name, host, created, owner, state, at) "
                "VALUES (?, ?, ?, ?, 'pending', ?)",
                (name, host, int(created), owner, time.time()),
            )
        except sqlite3.IntegrityError:
            raise errors.NamespaceExists(name) from None

    def set_ident(self, owner: str, ident: str | None, mount: str | None = None) -> None:
        if ident is not None:
            self.c.execute(
                "INSERT OR REPLACE INTO idents (owner, ident, mount) VALUES (?, ?, ?)",
                (owner, ident, mount),
            )

    def ident(self, owner: str) -> str | None:
        return self.ident_and_mount(owner)[0]

    def ident_and_mount(self, owner: str) -> tuple[str | None, str | None]:
        row = self.c.execute(
            "SELECT ident, mount FROM idents WHERE owner = ?", (owner,)
        ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def host_restarted(self, host: str) -> list[str]:
        """The host's kernel state is gone (a reboot, or its namespace made again): forget
        every record of what lived in it (endpoints, with their addresses and ports;
        the shared setup) and mark its networks to be made again; returns the workloads
        whose endpoints were forgotten, sorted. The networks keep their ids, names,
        subnets and settings."""
        rows = self.c.execute(
            "SELECT id, driver FROM networks WHERE host = ? AND state = 'active' ORDER BY at, id",
            (host,),
        ).fetchall()
        networks = []
        workloads: set[str] = set()
        gone: list[str] = []
        for network, driver in rows:
            for endpoint, workload in self.c.execute(
                "SELECT id, workload FROM endpoints WHERE network = ?", (network,)
            ).fetchall():
                gone.append(endpoint)
                workloads.add(workload)
            if driver in ("none", "host"):  # the built-in ones: nothing to make again
                continue
            networks.append(network)
            self.c.execute(
                "INSERT OR IGNORE INTO revive (network, host) VALUES (?, ?)", (network, host)
            )
        self.forget_all(gone)
        owned = self.c.execute(
            "SELECT 1 FROM shared WHERE host = ? AND key LIKE 'sysctl:%'", (host,)
        ).fetchone()
        self.forget_forwarding_allowed(host)  # what held before this restart does not
        if owned is not None:  # the user let hostnet turn forwarding on: again, then
            self.c.execute(
                "INSERT INTO revive (network, host) VALUES (?, ?)", (FORWARDING_ALLOWED, host)
            )
        self.c.execute("DELETE FROM shared WHERE host = ?", (host,))
        return sorted(workloads)

    def forwarding_allowed(self, host: str) -> bool:
        """Whether hostnet turned forwarding on in ``host`` before it restarted."""
        row = self.c.execute(
            "SELECT 1 FROM revive WHERE network = ? AND host = ?", (FORWARDING_ALLOWED, host)
        ).fetchone()
        return row is not None

    def forget_forwarding_allowed(self, host: str) -> None:
        self.c.execute(
            "DELETE FROM revive WHERE network = ? AND host = ?", (FORWARDING_ALLOWED, host)
        )

    def to_revive(self, host: str) -> list[str]:
        return [
            r[0]
            for r in self.c.execute(
                "SELECT v.network FROM revive v JOIN networks n ON n.id = v.network "
                "WHERE v.host = ? ORDER BY n.at, n.id",
                (host,),
            )
        ]

    def revived(self, network: str) -> None:
        self.c.execute("DELETE FROM revive WHERE network = ?", (network,))

    def add_lease(self, owner: str, name: str, pid: int, started: float) -> None:
        self.c.execute(
            "INSERT INTO leases (owner, name, pid, started) VALUES (?, ?, ?, ?)",
            (owner, name, pid, started),
        )

    def leases(self) -> list[dict[str, Any]]:
        return [
            {"owner": r[0], "name": r[1], "pid": r[2], "started": r[3]}
            for r in self.c.execute("SELECT owner, name, pid, started FROM leases ORDER BY name")
        ]

    def namespace(self, name: str) -> dict[str, Any] | None:
        row = self.c.execute(
            "SELECT name, host, created, owner, state FROM namespaces WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        return {
            "name": row[0],
            "host": row[1],
            "created": bool(row[2]),
            "owner": row[3],
            "state": row[4],
        }

    def namespaces(self) -> list[dict[str, Any]]:
        rows = self.c.execute(
            "SELECT name, host, created, owner, state FROM namespaces ORDER BY name"
        )
        return [
            {"name": r[0], "host": r[1], "created": bool(r[2]), "owner": r[3], "state": r[4]}
            for r in rows
        ]

    def activate(self, table: str, key: str, value: str, applied: Any = None) -> None:
        """Mark a pending record active (with the plan that was applied). Raises
        ConflictError if the record is gone meanwhile, so the setup is rolled back."""
        assert table in ("namespaces", "networks", "endpoints")
        if applied is None:
            cur = self.c.execute(
                f"UPDATE {table} SET state = 'active' WHERE {key} = ?",  # noqa: S608
                (value,),
            )
        else:
            cur = self.c.execute(
                f"UPDATE {table} SET state = 'active', applied = ? WHERE {key} = ?",  # noqa: S608
                (_dumps(applied), value),
            )
        if cur.rowcount != 1:
            raise errors.ConflictError(f"the {table[:-1]} record {value!r} went away meanwhile")

    def mark_deleting(self, table: str, key: str, values: list[str]) -> None:
        """Mark records as being torn down: no other call plans with them any more."""
        assert table in ("namespaces", "networks", "endpoints")
        self.c.executemany(
            f"UPDATE {table} SET state = 'deleting' WHERE {key} = ?",  # noqa: S608
            [(value,) for value in values],
        )

    def network_state(self, id: str) -> str | None:
        row = self.c.execute("SELECT state FROM networks WHERE id = ?", (id,)).fetchone()
        return None if row is None else str(row[0])

    # -- networks ----------------------------------------------------------------------

    def network_named(self, host: str, name: str) -> bool:
        """Whether ``host`` has a network called ``name`` (in any state)."""
        row = self.c.execute(
            "SELECT 1 FROM networks WHERE host = ? AND name = ?", (host, name)
        ).fetchone()
        return row is not None

    def add_network(
        self, *, id: str, name: str, driver: str, host: str, spec: Any, data: Any
    ) -> None:
        try:
            self.c.execute(
                "INSERT INTO networks (id, name, driver, host, spec, data, applied, state, at) "
                "VALUES (?, ?, ?, ?, ?, ?, '[]', 'pending', ?)",
                (id, name, driver, host, _dumps(spec), _dumps(data), time.time()),
            )
        except sqlite3.IntegrityError:
            raise errors.NetworkExists(name) from None

    def _network_row(self, row: Any) -> dict[str, Any]:
        out = {
            "id": row[0],
            "name": row[1],
            "driver": row[2],
            "host": row[3],
            "spec": _loads(row[4]),
            "data": _loads(row[5]),
            "state": row[6],
            "at": row[7],
        }
        if len(row) > 8:
            out["applied"] = _loads(row[8])
        return out

    def network(self, host: str, name: str, *, applied: bool = True) -> dict[str, Any] | None:
        """The network called ``name`` on ``host`` (or whose id is ``name``); without its
        applied plan (several KB of JSON, needed only to delete it) if ``applied=False``."""
        row = self.c.execute(
            _NETWORK_WITH_PLAN if applied else _NETWORK, (host, name, name, name)
        ).fetchone()
        if row is None and len(name) >= ID_PREFIX and _HEX.fullmatch(name.lower()):
            name = name.lower()
            # a unique prefix of its id, as `network ls` prints them (Docker takes them;
            # not shorter ones: a stale name such as "cafe" would find another network)
            rows = self.c.execute(_NETWORK_BY_PREFIX, (host, name, name + "g")).fetchall()
            if len(rows) > 1:
                raise errors.ValidationError(
                    f"{name!r} is the start of the id of more than one network: give more"
                )
            if rows and applied:
                return self.network(host, rows[0][0], applied=True)
            row = rows[0] if rows else None
        return None if row is None else self._network_row(row)

    def networks(
        self,
        host: str | None = None,
        *,
        applied: bool = True,
        ids: Collection[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Networks (of ``host``; with these ``ids``), by name; without their applied
        plans if ``applied=False``: several KB of JSON each, which a call made for one
        endpoint must not decode for every network (its cost would grow with them)."""
        sql = "SELECT id, name, driver, host, spec, data, state, at"
        sql += ", applied FROM networks" if applied else " FROM networks"
        where: list[str] = []
        args: list[Any] = []
        if host is not None:
            where.append("host = ?")
            args.append(host)
        if ids is not None:
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            args += list(ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._network_row(r) for r in self.c.execute(sql + " ORDER BY name", args)]

    # -- shared host setup (firewall tables, forwarding) --------------------------------

    def shared(self, host: str, key: str) -> dict[str, Any] | None:
        row = self.c.execute(
            "SELECT owner, applied FROM shared WHERE host = ? AND key = ?", (host, key)
        ).fetchone()
        return None if row is None else {"key": key, "owner": row[0], "applied": _loads(row[1])}

    def shared_owned_by(self, owner: str) -> list[dict[str, Any]]:
        return [
            {"host": r[0], "key": r[1], "owner": owner, "applied": _loads(r[2])}
            for r in self.c.execute(
                "SELECT host, key, applied FROM shared WHERE owner = ? ORDER BY key", (owner,)
            )
        ]

    def add_shared(self, host: str, key: str, owner: str, applied: Any) -> None:
        self.c.execute(
            "INSERT INTO shared (host, key, owner, applied) VALUES (?, ?, ?, ?)",
            (host, key, owner, _dumps(applied)),
        )

    def set_shared_applied(self, host: str, key: str, applied: Any) -> None:
        """Replace the recorded plan of shared setup (gc's upgrade of what an older
        hostnet made)."""
        self.c.execute(
            "UPDATE shared SET applied = ? WHERE host = ? AND key = ?",
            (_dumps(applied), host, key),
        )

    def set_network_applied(self, id: str, applied: Any) -> None:
        """Replace a network's recorded plan (gc's upgrade of its firewall)."""
        self.c.execute("UPDATE networks SET applied = ? WHERE id = ?", (_dumps(applied), id))

    def transfer_shared(self, host: str, key: str, owner: str) -> None:
        self.c.execute(
            "UPDATE shared SET owner = ? WHERE host = ? AND key = ?", (owner, host, key)
        )

    # -- endpoints ---------------------------------------------------------------------

    def add_endpoint(
        self, *, id: str, network: str, workload: str, ns: str | None, data: Any
    ) -> None:
        try:
            self.c.execute(
                "INSERT INTO endpoints (id, network, workload, ns, data, applied, state, at) "
                "VALUES (?, ?, ?, ?, ?, '[]', 'pending', ?)",
                (id, network, workload, ns, _dumps(data), time.time()),
            )
        except sqlite3.IntegrityError:
            raise errors.ConflictError(
                f"{workload!r} is already connected to this network"
            ) from None

    def add_published(
        self,
        id: str,
        *,
        owner: str,
        ports: list[Any],
        applied: list[Any],
        asked: list[Any] | None = None,
    ) -> None:
        """Record ports published on an existing endpoint and the ops that did it (and
        the ``-p`` specs as asked: [container port/protocol, host IP, host port] each,
        "" where the spec gave none), in a row of their own: the cost does not grow
        with the ports published before."""
        row = self.c.execute(
            "SELECT 1 FROM endpoints WHERE id = ? AND state = 'active'", (id,)
        ).fetchone()
        if row is None:
            raise errors.ConflictError(f"endpoint {id[:12]} was disconnected meanwhile")
        self.c.execute(
            "INSERT INTO published (owner, endpoint, ports, applied, at, asked) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (owner, id, _dumps(ports), _dumps(applied), time.time(), _dumps(asked or [])),
        )

    def endpoint_workload(self, endpoint_id: str) -> str:
        """The workload of an endpoint (the id itself if there is no such endpoint)."""
        row = self.c.execute(
            "SELECT workload FROM endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        return endpoint_id if row is None else str(row[0])

    def _endpoint_row(self, row: Any) -> dict[str, Any]:
        return {
            "id": row[0],
            "network": row[1],
            "workload": row[2],
            "ns": row[3],
            "data": _loads(row[4]),
            "applied": _loads(row[5]),
            "state": row[6],
            "at": row[7],
        }

    def endpoints(
        self,
        *,
        network: str | None = None,
        workload: str | None = None,
        ns: str | None = None,
        published: bool = True,
    ) -> list[dict[str, Any]]:
        """Endpoint records; with ``published``, the ports published after connect (and
        the ops that did it) are merged into their ``data["ports"]`` and ``applied``."""
        where, args = [], []
        for col, val in (("network", network), ("workload", workload), ("ns", ns)):
            if val is not None:
                where.append(f"e.{col} = ?")
                args.append(val)
        cond = (" WHERE " + " AND ".join(where)) if where else ""  # constant column names
        own = "SELECT e.id, e.network, e.workload, e.ns, e.data, e.applied, e.state, e.at "
        own += "FROM endpoints e" + cond + " ORDER BY e.at, e.id"
        rows = [self._endpoint_row(r) for r in self.c.execute(own, args)]
        if published and rows:
            by_id = {r["id"]: r for r in rows}
            later = "SELECT p.endpoint, p.ports, p.applied, p.asked FROM published p "
            later += "JOIN endpoints e ON e.id = p.endpoint" + cond + " ORDER BY p.at, p.owner"
            for endpoint, ports, applied, asked in self.c.execute(later, args):
                row = by_id[endpoint]
                _merge_asked(row["data"], _loads(ports), _loads(asked))
                ops = _loads(applied)
                row["applied"].extend(ops)
                # default routes it took over from an endpoint that left (no ports)
                taken = [o["dst"] for o in ops if o.get("op") == "AddRoute"]
                if taken:
                    row["data"].setdefault("defaults", []).extend(taken)
        return rows

    def endpoints_in(self, namespaces: Collection[str]) -> list[dict[str, Any]]:
        """The endpoints (as ``endpoints`` gives them) of any of ``namespaces``: read
        only for those that have some (usually none)."""
        names = sorted(set(namespaces))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(names), 500):  # SQLite's limit on parameters
            part = names[start : start + 500]
            marks = ",".join("?" * len(part))
            used = self.c.execute(
                f"SELECT DISTINCT ns FROM endpoints WHERE ns IN ({marks})",  # noqa: S608 (only ?s)
                part,
            ).fetchall()
            for (ns,) in used:
                rows += self.endpoints(ns=ns)
        return rows

    # -- addresses ---------------------------------------------------------------------

    def allocated(self, pool: str) -> set[str]:
        return {
            r[0] for r in self.c.execute("SELECT address FROM addresses WHERE pool = ?", (pool,))
        }

    def allocate(self, pool: str, address: str, owner: str) -> bool:
        """Claim ``address`` in ``pool``; False if someone holds it."""
        try:
            self.c.execute(
                "INSERT INTO addresses (pool, address, owner) VALUES (?, ?, ?)",
                (pool, address, owner),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def address_owner(self, pool: str, address: str) -> str | None:
        row = self.c.execute(
            "SELECT owner FROM addresses WHERE pool = ? AND address = ?", (pool, address)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- ports -------------------------------------------------------------------------

    def port_holders(self, host: str, protocol: str, port: int) -> list[tuple[str, str, str]]:
        """(host_ip, owner, workload) of reservations of this port."""
        return [
            (r[0], r[1], r[2])
            for r in self.c.execute(
                "SELECT host_ip, owner, workload FROM ports "
                "WHERE host = ? AND protocol = ? AND port = ?",
                (host, protocol, port),
            )
        ]

    def reserved_ports(self, host: str, protocol: str, low: int, high: int) -> set[int]:
        return {
            r[0]
            for r in self.c.execute(
                "SELECT port FROM ports WHERE host = ? AND protocol = ? AND port BETWEEN ? AND ?",
                (host, protocol, low, high),
            )
        }

    def reserve_port(
        self, host: str, protocol: str, host_ip: str, port: int, owner: str, workload: str
    ) -> None:
        self.c.execute(
            "INSERT INTO ports (host, protocol, host_ip, port, owner, workload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (host, protocol, host_ip, port, owner, workload),
        )

    def ports(self, host: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT host, protocol, host_ip, port, owner, workload FROM ports"
        where, args = [], []
        if host is not None:
            where.append("host = ?")
            args.append(host)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [
            {
                "host": r[0],
                "protocol": r[1],
                "host_ip": r[2],
                "port": r[3],
                "owner": r[4],
                "workload": r[5],
            }
            for r in self.c.execute(sql + " ORDER BY port, protocol, host_ip", args)
        ]

    # -- admissions --------------------------------------------------------------------

    def record_admission(
        self, host: str, workload: str, what: str, decision: str, reason: str
    ) -> None:
        """Record a policy decision; only the last KEEP_ADMISSIONS are kept (a log,
        read by ``hostnet audit``, that must not grow with every restart of a
        service)."""
        cur = self.c.execute(
            "INSERT INTO admissions (at, host, workload, what, decision, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), host, workload, what, decision, reason),
        )
        if cur.lastrowid is not None and cur.lastrowid > KEEP_ADMISSIONS:
            self.c.execute(
                "DELETE FROM admissions WHERE id <= ?", (cur.lastrowid - KEEP_ADMISSIONS,)
            )

    def admissions(self) -> list[dict[str, Any]]:
        return [
            {
                "at": r[0],
                "host": r[1],
                "workload": r[2],
                "what": r[3],
                "decision": r[4],
                "reason": r[5],
            }
            for r in self.c.execute(
                "SELECT at, host, workload, what, decision, reason FROM admissions ORDER BY id"
            )
        ]

    # -- journal -----------------------------------------------------------------------

    def journal_begin(
        self,
        *,
        id: str,
        kind: str,
        owner: str,
        pid: int,
        started: float,
        plan: list[dict[str, Any]],
        places: Mapping[str, str] | None = None,
    ) -> None:
        """``places``: the namespaces the plan acts in, each with its bind mount as it
        is now ("" for one that does not exist), so that a journal finished later acts
        in no namespace made since under the same name."""
        self.c.execute(
            "INSERT INTO journal (id, kind, owner, pid, started, plan, done, at, places) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (id, kind, owner, pid, started, _dumps(plan), time.time(), _dumps(places or {})),
        )

    def journal_exists(self, id: str) -> bool:
        return self.c.execute("SELECT 1 FROM journal WHERE id = ?", (id,)).fetchone() is not None

    def journal_end(self, id: str) -> None:
        self.c.execute("DELETE FROM journal WHERE id = ?", (id,))

    def journal_replace(self, id: str, *, kind: str, plan: list[dict[str, Any]]) -> None:
        """Turn a journal into a failed one of ``kind`` with a new plan (a setup whose
        rollback failed becomes a teardown of the inverses still to do)."""
        self.c.execute(
            "UPDATE journal SET kind = ?, plan = ?, done = 0, failed = 1 WHERE id = ?",
            (kind, _dumps(plan), id),
        )

    def teardown_done(self, id: str, owners: Collection[str]) -> set[str]:
        """End teardown journal ``id``, which did all its work, and forget its owners;
        returns the owners it kept.

        Failed teardowns whose owners are all among ``owners`` end too: this one did
        what they had left to do, and left behind, ``recover`` would run them again and
        undo what was made since (a port published again). An owner that another
        teardown journal still names (one that failed and waits for gc, or one running
        now) is kept, with its addresses and ports: that journal still holds its ops,
        and until it ends nobody may be given what they would remove."""
        self.journal_end(id)
        mine = set(owners)
        kept: set[str] = set()
        rows = self.c.execute("SELECT id, owner, failed FROM journal WHERE kind = 'teardown'")
        for other, text, failed in rows.fetchall():
            theirs = set(_loads(text))
            if failed == 1 and theirs and theirs <= mine:
                self.journal_end(other)
            else:
                kept |= theirs & mine
        self.forget_all([owner for owner in owners if owner not in kept])
        return kept

    def owner_names(self, owners: Collection[str]) -> list[str]:
        """What ``owners`` (of a journal) stand for, while their records last: "WORKLOAD
        on NETWORK" for an endpoint (and its published ports), "network NAME",
        "namespace NAME"."""
        out = []
        for owner in owners:
            base = owner.split("/")[0]
            row = self.c.execute(
                "SELECT e.workload, n.name FROM endpoints e JOIN networks n "
                "ON n.id = e.network WHERE e.id = ?",
                (base,),
            ).fetchone()
            if row is not None:
                out.append(f"{row[0]} on {row[1]}")
                continue
            row = self.c.execute("SELECT name FROM networks WHERE id = ?", (base,)).fetchone()
            if row is not None:
                out.append(f"network {row[0]}")
                continue
            row = self.c.execute(
                "SELECT name FROM namespaces WHERE owner = ?", (owner,)
            ).fetchone()
            if row is not None:
                out.append(f"namespace {row[0]}")
        return out

    def journal_fail(self, id: str) -> None:
        self.c.execute("UPDATE journal SET failed = 1 WHERE id = ?", (id,))

    def journal_owners(self, *, failed: bool | None = None) -> set[str]:
        """Owners of journals: all of them (None); those that ended with errors and wait
        for ``hostnet gc`` (True); those still being applied, retried right now, or left
        by a process that died (False)."""
        rows = self.c.execute("SELECT owner, failed FROM journal")
        return {
            owner
            for text, state in rows
            if failed is None or (state == 1) == failed
            for owner in _loads(text)
        }

    def journals(self) -> list[dict[str, Any]]:
        return [
            {
                "id": r[0],
                "kind": r[1],
                "owner": r[2],
                "pid": r[3],
                "started": r[4],
                "plan": _loads(r[5]),
                "done": r[6],
                "failed": bool(r[7]),
                "retrying": r[7] == RETRYING,
                "at": r[8],
                "places": _loads(r[9]),
            }
            for r in self.c.execute(
                "SELECT id, kind, owner, pid, started, plan, done, failed, at, places "
                "FROM journal ORDER BY at"
            )
        ]

    def journal_claim(self, entry: dict[str, Any], pid: int, started: float) -> bool:
        """Take over a journal (as read by ``journals``) from a dead process, or a
        failed one to retry it; False if someone else did first. A failed journal
        being retried is marked so, and other processes leave it alone while the
        retrying process lives (``journal_fail`` marks it failed again)."""
        cur = self.c.execute(
            "UPDATE journal SET pid = ?, started = ?, failed = ? "
            "WHERE id = ? AND pid = ? AND started = ? AND failed = ?",
            (
                pid,
                started,
                RETRYING if entry["failed"] else 0,
                entry["id"],
                entry["pid"],
                entry["started"],
                (RETRYING if entry["retrying"] else 1) if entry["failed"] else 0,
            ),
        )
        return cur.rowcount == 1


#: what to do about a damaged store
DAMAGED = (
    "the store is damaged; move it away to start afresh (hostnet then forgets what it "
    "made: `hostnet audit` lists what is left in the kernel)"
)


def _settle(conn: sqlite3.Connection) -> None:
    """End a transaction an interrupt left open on ``conn`` (between its BEGIN and the
    code that ends it), so that it holds no lock and the next statement is not part of
    it: nothing of it was committed, so nothing of it counts."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _advice(path: Path, exc: sqlite3.Error | OSError, timeout: float) -> str:
    """SQLite's error (or the filesystem's), with what stands in the way and what to do
    (errors' contract)."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{path}: {text}: another process has held the store's write lock for over "
            f"{timeout:g} s (a hostnet call that is stuck, or an sqlite3 session left "
            f"in a transaction: `fuser -v {path}` names it); try again once it is done"
        )
    if "full" in text or "No space" in text:
        return (
            f"{path}: {text}: the state directory's filesystem is full; free space, then "
            "run `hostnet gc`, which finishes what this call could not record"
        )
    if "readonly" in text or "read-only" in text.lower():
        return f"{path}: {text}: the state directory is read-only; hostnet needs to write it"
    if "not a database" in text or "malformed" in text:
        return f"{path}: {text}: {DAMAGED}"
    return f"{path}: {text}"


class LocalStore:
    """The embedded store.

    >>> import tempfile
    >>> store = LocalStore(tempfile.mkdtemp())
    >>> with store.transaction() as tx:
    ...     tx.record_admission("", "web", "host-network", "admitted", "opt-in")
    >>> len(store.read(lambda tx: tx.admissions()))
    1
    """

    def __init__(
        self, state_dir: str | os.PathLike[str] | None = None, timeout: float = 30.0
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.StoreError(
                f"cannot create the state directory {self.state_dir}: {exc.strerror}; "
                "pass state_dir= or set HOSTNET_STATE_DIR to a writable directory"
            ) from exc
        self.path = self.state_dir / "state.db"
        self._timeout = timeout
        if not self.path.exists():
            self._create()
        elif self.path.stat().st_nlink > 1:
            # (a second name a process killed while making the store left: _create)
            self._sweep_unfinished()
        if self.path.is_file() and self.path.stat().st_size == 0:
            # (SQLite would take it for a new, empty store, and hostnet would forget
            # everything it made: a store it made is never empty, not even while it is
            # being made, see _create)
            raise errors.StoreError(f"{self.path} is empty (truncated?): {DAMAGED}")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._migrate()
        except BaseException:
            self.close()  # (the connection opened for it)
            raise

    def _create(self) -> None:
        """A new store, made whole under a name of its own and then linked into place:
        a process starting at the same moment finds no store or a whole one, never the
        empty file SQLite makes first, which stands for a truncated store. (Between
        processes of hostnets from before this, the race is as it was.)"""
        self._sweep_unfinished()
        name = str(self.state_dir / f"{_UNFINISHED}{secrets.token_hex(8)}")
        try:
            # (mode as SQLite gives the files it makes: 0644 less the umask)
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o644))
            conn = sqlite3.connect(name, timeout=self._timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                self._migrate_schema(conn)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # (all of it in the file)
            finally:
                conn.close()
            try:
                os.link(name, self.path)
            except FileExistsError:
                pass  # another process's, whole too
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                # a filesystem without hard links: made in place by SQLite, as before
                # (which a process starting at the same moment may take for damaged)
        except (sqlite3.Error, OSError) as exc:
            raise errors.StoreError(
                "cannot create " + _advice(self.path, exc, self._timeout)
            ) from exc
        finally:
            for leftover in (name, name + "-wal", name + "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)

    def _sweep_unfinished(self) -> None:
        """Remove what a process killed while making a store left, which no one ever
        opens: a second name of the store itself (at once: a making that linked its
        file unlinks that name right after), and the files of one it did not finish,
        once they are older than any making still under way."""
        try:
            entries = list(os.scandir(self.state_dir))
            store = self.path.stat().st_ino if self.path.exists() else None
        except OSError:
            return
        now = time.time()
        for entry in entries:
            if not entry.name.startswith(_UNFINISHED):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if st.st_ino == store or now - st.st_mtime > UNFINISHED_AGE:
                    os.unlink(entry.path)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                raise errors.StoreError(
                    "cannot open " + _advice(self.path, exc, self._timeout)
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _migrate(self) -> None:
        try:
            self._migrate_schema(self._conn())
        except sqlite3.Error as exc:
            raise errors.StoreError(_advice(self.path, exc, self._timeout)) from exc

    def _migrate_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            # A column older stores lack, added without a new schema number: older
            # hostnets name their columns, so they read and write such a store as before
            # (their published rows get "[]": not recorded, see as_asked).
            if "asked" not in {r[1] for r in conn.execute("PRAGMA table_info(published)")}:
                conn.execute("ALTER TABLE published ADD COLUMN asked TEXT NOT NULL DEFAULT '[]'")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise errors.StoreError(
                    f"{self.path} has schema {row[0]}, written by a newer hostnet; this one "
                    f"knows schema {SCHEMA_VERSION}: upgrade hostnet or use another state_dir"
                )
            elif int(row[0]) < SCHEMA_VERSION:  # the new tables were created above
                columns = {r[1] for r in conn.execute("PRAGMA table_info(journal)")}
                if "places" not in columns:  # schema 3
                    conn.execute(
                        "ALTER TABLE journal ADD COLUMN places TEXT NOT NULL DEFAULT '{}'"
                    )
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # an interrupt can land after COMMIT ran
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction: committed on success, rolled back on any exception.
        SQLite's own errors come out as StoreError."""
        conn = self._conn()
        if not self.path.exists():  # (writes would go to a deleted file, and be lost)
            raise errors.StoreError(
                f"{self.path} is gone: the state directory was deleted while this "
                "Controller had it open; what it recorded is lost (`hostnet audit` lists "
                "what is left in the kernel)"
            )
        # (one try from BEGIN on: an interrupt, Ctrl-C or SIGTERM, that came while
        # BEGIN waited for another process's write lock is raised as soon as BEGIN
        # returns, and the transaction must not stay open, holding the lock)
        try:
            _settle(conn)
            conn.execute("BEGIN IMMEDIATE")
            yield Tx(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise errors.StoreError(_advice(self.path, exc, self._timeout)) from exc
        except BaseException:
            if conn.in_transaction:  # an interrupt can land after COMMIT ran
                conn.execute("ROLLBACK")
            raise

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` in a read transaction (a consistent snapshot)."""
        conn = self._conn()
        try:
            _settle(conn)
            conn.execute("BEGIN")
            try:
                return fn(Tx(conn))
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise errors.StoreError(_advice(self.path, exc, self._timeout)) from exc
        except BaseException:
            _settle(conn)  # (an interrupt just after BEGIN)
            raise

    def journal_progress(self, id: str, done: int) -> None:
        try:
            conn = self._conn()
            _settle(conn)
            conn.execute("UPDATE journal SET done = ? WHERE id = ?", (done, id))
        except sqlite3.Error as exc:
            raise errors.StoreError(_advice(self.path, exc, self._timeout)) from exc

    def journal_place(self, id: str, done: int, places: Mapping[str, str]) -> None:
        """Progress, and more of the places a journal acts in (a namespace its plan has
        just made, with the mount that names it): one write."""
        sql = "UPDATE journal SET done = ?, places = json_patch(places, ?) WHERE id = ?"
        try:
            conn = self._conn()
            _settle(conn)
            conn.execute(sql, (done, _dumps(dict(places)), id))
        except sqlite3.Error as exc:
            raise errors.StoreError(_advice(self.path, exc, self._timeout)) from exc

    def journal_note(self, id: str, places: Mapping[str, str]) -> None:
        """More of the places a journal acts in, its progress unchanged: one write."""
        sql = "UPDATE journal SET places = json_patch(places, ?) WHERE id = ?"
        try:
            conn = self._conn()
            _settle(conn)
            conn.execute(sql, (_dumps(dict(places)), id))
        except sqlite3.Error as exc:
            raise errors.StoreError(_advice(self.path, exc, self._timeout)) from exc

    def dump(self) -> dict[str, Any]:
        """Every table as rows, for tests comparing states before and after."""
        conn = self._conn()
        out = {}
        for table in (
            "namespaces",
            "idents",
            "revive",
            "leases",
            "networks",
            "endpoints",
            "published",
            "addresses",
            "ports",
            "journal",
            "shared",
        ):
            out[table] = sorted(map(tuple, conn.execute(f"SELECT * FROM {table}")))  # noqa: S608
        return out

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
