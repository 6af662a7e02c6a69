"""The embedded store: transactions, schema, where it lives, and safety across processes."""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hostnet.errors import NamespaceExists, PortInUse, StoreError
from hostnet.model import clashes
from hostnet.policy.ports import PortAllocator, PortRequest
from hostnet.stores.local import FORGET_CHUNK, SCHEMA_VERSION, LocalStore


@pytest.fixture
def store(tmp_path: Path):
    s = LocalStore(tmp_path / "state")
    yield s
    s.close()


def test_a_transaction_commits_or_rolls_back_as_a_whole(store: LocalStore) -> None:
    with store.transaction() as tx:
        tx.add_namespace("a", "", created=True, owner="ns:a")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_namespace("b", "", created=True, owner="ns:b")
        tx.reserve_port("", "tcp", "0.0.0.0", 80, "ns:b", "b")
        raise RuntimeError("boom")
    assert [r["name"] for r in store.read(lambda tx: tx.namespaces())] == ["a"]
    assert store.read(lambda tx: tx.ports()) == []


def test_duplicate_namespace_record_is_a_conflict(store: LocalStore) -> None:
    with store.transaction() as tx:
        tx.add_namespace("a", "", created=True, owner="ns:a")
    with pytest.raises(NamespaceExists), store.transaction() as tx:
        tx.add_namespace("a", "", created=False, owner="other")


def test_forget_removes_everything_an_owner_holds_and_nothing_else(store: LocalStore) -> None:
    with store.transaction() as tx:
        tx.add_namespace("a", "", created=True, owner="o1")
        tx.add_namespace("b", "", created=True, owner="o2")
        tx.reserve_port("", "tcp", "0.0.0.0", 80, "o1", "a")
        tx.reserve_port("", "tcp", "0.0.0.0", 81, "o2", "b")
        tx.allocate("net", "10.0.0.2", "o1")
        tx.allocate("net", "10.0.0.3", "o2")
    with store.transaction() as tx:
        tx.forget("o1")
    dump = store.dump()
    assert [r[0] for r in dump["namespaces"]] == ["b"]
    assert [r[3] for r in dump["ports"]] == [81]
    assert [r[1] for r in dump["addresses"]] == ["10.0.0.3"]


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = LocalStore(tmp_path)
    with first.transaction() as tx:
        tx.reserve_port("", "udp", "::", 53, "o", "dns")
    first.close()
    second = LocalStore(tmp_path)
    try:
        assert [(r["port"], r["workload"]) for r in second.read(lambda tx: tx.ports())] == [
            (53, "dns")
        ]
    finally:
        second.close()


def test_a_store_from_a_newer_hostnet_is_refused(tmp_path: Path) -> None:
    LocalStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "state.db")
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(StoreError, match="newer hostnet") as info:
        LocalStore(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_the_current_schema_opens(tmp_path: Path) -> None:
    LocalStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "state.db")
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    conn.close()
    assert int(value) == SCHEMA_VERSION
    LocalStore(tmp_path).close()


def _as_older_hostnet_left_it(path: Path, *statements: str) -> None:
    """Make a store in ``path`` and change it with ``statements`` into what an older
    hostnet left (the tables and rows it had)."""
    LocalStore(path).close()
    conn = sqlite3.connect(path / "state.db")
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _schema(path: Path) -> str:
    conn = sqlite3.connect(path / "state.db")
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    conn.close()
    return str(value)


def test_a_store_from_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    _as_older_hostnet_left_it(  # schema 1: no table for later-published ports
        tmp_path, "DROP TABLE published", "UPDATE meta SET value = '1' WHERE key = 'schema'"
    )
    store = LocalStore(tmp_path)
    try:
        assert store.dump()["published"] == []
    finally:
        store.close()
    assert int(_schema(tmp_path)) == SCHEMA_VERSION == 3


def test_a_store_without_asked_port_specs_gets_the_column_and_stays_schema_3(
    tmp_path: Path,
) -> None:
    # published rows of hostnet before session 9 had no -p specs as asked; the column
    # is added without a new schema number, so that those versions still open the store
    _as_older_hostnet_left_it(
        tmp_path,
        "ALTER TABLE published DROP COLUMN asked",
        "INSERT INTO endpoints (id, network, workload, ns, data, applied, state, at) "
        """VALUES ('e', 'n', 'w', 'w', '{"ports": [["tcp", "0.0.0.0", 8080, 80]]}', """
        "'[]', 'active', 1.0)",
        # as an older hostnet writes it, naming its columns
        "INSERT INTO published (owner, endpoint, ports, applied, at) "
        """VALUES ('e/1', 'e', '[["udp", "127.0.0.1", 5353, 53]]', '[]', 2.0)""",
    )
    store = LocalStore(tmp_path)
    try:
        (row,) = store.read(lambda tx: tx.endpoints())
        assert row["data"]["asked"] == [
            ["80/tcp", "0.0.0.0", "8080"],
            ["53/udp", "127.0.0.1", "5353"],
        ]
        with store.transaction() as tx:  # an older hostnet's insert still works
            tx.c.execute(
                "INSERT INTO published (owner, endpoint, ports, applied, at) "
                "VALUES ('e/2', 'e', '[]', '[]', 3.0)"
            )
    finally:
        store.close()
    assert _schema(tmp_path) == "3"


def test_cursors_of_networks_gone_are_forgotten(tmp_path: Path) -> None:
    # hostnet before session 5 kept a deleted network's address cursors for good
    store = LocalStore(tmp_path)
    try:
        with store.transaction() as tx:
            tx.add_network(id="a" * 64, name="web", driver="bridge", host="", spec={}, data={})
            for name in (f"ip:{'a' * 64}/10.0.0.0/8", f"ip:{'b' * 64}/10.0.0.0/8", "port::tcp"):
                tx.c.execute("INSERT INTO cursors (name, value) VALUES (?, '7')", (name,))
        with store.transaction() as tx:
            assert tx.forget_orphan_cursors() == 1
            names = {name for (name,) in tx.c.execute("SELECT name FROM cursors")}
        assert names == {f"ip:{'a' * 64}/10.0.0.0/8", "port::tcp"}
    finally:
        store.close()


def test_journals_of_a_schema_2_store_are_read_after_the_upgrade(tmp_path: Path) -> None:
    # schema 2 journals did not record the namespaces their plan acts in
    _as_older_hostnet_left_it(
        tmp_path,
        "ALTER TABLE journal DROP COLUMN places",
        "INSERT INTO journal (id, kind, owner, pid, started, plan, done, at) "
        "VALUES ('j', 'teardown', '[]', 1, 1.0, '[]', 0, 1.0)",
        "UPDATE meta SET value = '2' WHERE key = 'schema'",
    )
    store = LocalStore(tmp_path)
    try:
        (entry,) = store.read(lambda tx: tx.journals())
        assert entry["id"] == "j" and entry["places"] == {}
        with store.transaction() as tx:
            tx.journal_begin(
                id="k", kind="setup", owner="[]", pid=1, started=1.0, plan=[], places={"a": ""}
            )
        assert [e["places"] for e in store.read(lambda tx: tx.journals())] == [{}, {"a": ""}]
    finally:
        store.close()


def test_a_corrupt_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"state\.db"):
        LocalStore(tmp_path)


@pytest.mark.parametrize("sub", ["", "below"])
def test_a_state_dir_that_is_a_file_is_a_store_error(tmp_path: Path, sub: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError):
        LocalStore(blocker / sub if sub else blocker)


def test_state_dir_argument_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNET_STATE_DIR", str(tmp_path / "from-env"))
    store = LocalStore(tmp_path / "from-arg")
    store.close()
    assert store.path == tmp_path / "from-arg" / "state.db"
    assert store.path.exists()
    assert not (tmp_path / "from-env").exists()


def test_state_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNET_STATE_DIR", str(tmp_path / "from-env"))
    store = LocalStore()
    store.close()
    assert store.state_dir == tmp_path / "from-env"
    assert (tmp_path / "from-env" / "state.db").exists()


def test_a_journal_is_claimed_by_one_process_only(store: LocalStore) -> None:
    with store.transaction() as tx:
        tx.journal_begin(id="j", kind="setup", owner="[]", pid=111, started=1.0, plan=[])
    (seen,) = store.read(lambda tx: tx.journals())  # both processes read it
    with store.transaction() as tx:
        assert tx.journal_claim(seen, 222, 2.0)
    with store.transaction() as tx:
        assert not tx.journal_claim(seen, 333, 3.0)
    (entry,) = store.read(lambda tx: tx.journals())
    assert (entry["pid"], entry["started"], entry["failed"]) == (222, 2.0, False)


def test_a_failed_journal_is_claimed_for_one_retry_at_a_time(store: LocalStore) -> None:
    with store.transaction() as tx:
        tx.journal_begin(id="j", kind="teardown", owner="[]", pid=111, started=1.0, plan=[])
        tx.journal_fail("j")
    (seen,) = store.read(lambda tx: tx.journals())
    with store.transaction() as tx:  # its own process retries it (same pid)
        assert tx.journal_claim(seen, 111, 1.0)
    with store.transaction() as tx:  # another that read it before loses
        assert not tx.journal_claim(seen, 333, 3.0)
    (entry,) = store.read(lambda tx: tx.journals())
    assert entry["failed"] and entry["retrying"] and entry["pid"] == 111
    with store.transaction() as tx:
        tx.journal_fail("j")  # the retry failed again: free for the next one
    (entry,) = store.read(lambda tx: tx.journals())
    assert entry["failed"] and not entry["retrying"]


# -- many processes, one state directory ------------------------------------------------

WORKERS = 8
ROUNDS = 12
EPHEMERAL = (41000, 41199)


def _ip_of(index: int) -> str:
    return "0.0.0.0" if index % 2 == 0 else f"127.0.0.{index}"


def _worker(state_dir: str, index: int, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: reserve ports through transactions, report outcomes."""
    outcomes: list[tuple[Any, ...]] = []
    try:
        store = LocalStore(state_dir)
        alloc = PortAllocator(host="", ephemeral=EPHEMERAL)
        barrier.wait(timeout=60)
        for j in range(ROUNDS):
            owner = f"w{index}-e{j}"
            with store.transaction() as tx:
                (got,) = alloc.reserve(tx, [PortRequest()], owner=owner, workload=owner)
            outcomes.append(("ephemeral", owner, got[0].host_ip, got[0].port))
            owner = f"w{index}-x{j}"
            wanted = PortRequest(host_ip=_ip_of(index), start=9000 + j, end=9000 + j)
            try:
                with store.transaction() as tx:
                    alloc.reserve(tx, [wanted], owner=owner, workload=owner)
            except PortInUse as exc:
                outcomes.append(("conflict", owner, exc.host_ip, exc.port, exc.holder))
            else:
                outcomes.append(("explicit", owner, wanted.host_ip, wanted.start))
        store.close()
    except BaseException as exc:  # reported to the parent, which fails the test
        outcomes.append(("crash", repr(exc)))
    results.put((index, outcomes))


def test_many_processes_never_double_book_a_port(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    state_dir = str(tmp_path / "state")
    LocalStore(state_dir).close()  # schema in place before the race
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(state_dir, i, barrier, results)) for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    reports: dict[int, list[tuple[Any, ...]]] = {}
    try:
        while len(reports) < WORKERS:
            try:
                index, outcomes = results.get(timeout=1)
            except queue.Empty:
                # a worker that died before reporting (it could not even import) ends
                # the wait instead of a timeout
                if not any(p.is_alive() for p in procs) and results.empty():
                    pytest.fail(f"only {len(reports)} of {WORKERS} workers reported")
                continue
            reports[index] = outcomes
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.exitcode is None:
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs)
    outcomes = [o for report in reports.values() for o in report]
    assert not [o for o in outcomes if o[0] == "crash"]

    ephemeral = [o for o in outcomes if o[0] == "ephemeral"]
    assert len(ephemeral) == WORKERS * ROUNDS
    ports = [o[3] for o in ephemeral]
    assert len(set(ports)) == len(ports), "an ephemeral port was handed out twice"
    assert all(EPHEMERAL[0] <= p <= EPHEMERAL[1] for p in ports)

    won = [o for o in outcomes if o[0] == "explicit"]
    lost = [o for o in outcomes if o[0] == "conflict"]
    assert len(won) + len(lost) == WORKERS * ROUNDS
    assert lost, "the workers never contended"
    for port in range(9000, 9000 + ROUNDS):
        winners = [o for o in won if o[3] == port]
        assert winners
        for i, a in enumerate(winners):  # winners of one port never clash
            for b in winners[i + 1 :]:
                assert not clashes(a[2], b[2]), (a, b)
        for loser in (o for o in lost if o[3] == port):  # every refusal names a real holder
            holder = next(w for w in winners if w[1] == loser[4])
            assert clashes(holder[2], loser[2])

    store = LocalStore(state_dir)
    try:
        rows = store.read(lambda tx: tx.ports())
        journals = store.read(lambda tx: tx.journals())
    finally:
        store.close()
    assert journals == []
    stored = sorted((r["owner"], r["host_ip"], r["port"]) for r in rows)
    expected = sorted([(o[1], o[2], o[3]) for o in ephemeral] + [(o[1], o[2], o[3]) for o in won])
    assert stored == expected


def test_forget_takes_an_owners_later_ports_and_nobody_elses(store: LocalStore) -> None:
    with store.transaction() as tx:
        for port, owner in enumerate(["abc", "abc/1", "abc/zz", "abcd", "ab", "abc0", "ab/c"]):
            tx.reserve_port("", "tcp", "0.0.0.0", 8000 + port, owner, "w")
    with store.transaction() as tx:
        tx.forget("abc")
    left = sorted(r["owner"] for r in store.read(lambda tx: tx.ports()))
    assert left == ["ab", "ab/c", "abc0", "abcd"]


def test_forget_takes_a_networks_address_cursors_and_nobody_elses(store: LocalStore) -> None:
    names = ["ip:abc/10.0.0.0/24", "ip:abc/fd00::/64", "ip:abcd/10.1.0.0/24", "ip:ab/x"]
    names += ["port::tcp", "group:abc"]
    with store.transaction() as tx:
        for name in names:
            tx.set_cursor(name, 5)
    with store.transaction() as tx:
        tx.forget("abc")
        assert [n for n in names if tx.next_cursor(n, 0) == 5] == names[2:]


def test_forget_all_is_forget_of_each_owner_across_chunks(store: LocalStore) -> None:
    # more owners than one statement takes, each holding a record of every kind
    owners = [f"o{i:04d}" for i in range(2 * FORGET_CHUNK + 100)]
    with store.transaction() as tx:
        for i, owner in enumerate(owners):
            tx.add_namespace(f"n{i}", "", created=True, owner=owner)
            tx.reserve_port("", "tcp", "0.0.0.0", 10000 + i, owner, "w")
            tx.reserve_port("", "udp", "0.0.0.0", 10000 + i, f"{owner}/1", "w")  # later
            tx.allocate("net", f"10.{i // 250}.{i % 250}.1", owner)
            tx.set_cursor(f"ip:{owner}/10.0.0.0/24", 5)
            tx.set_ident(owner, "boot/1")
    gone = owners[::2]  # every other one: the rest must stay, in every table
    with store.transaction() as tx:
        tx.forget_all([*gone, gone[0], "nobody"])  # (a repeat, and an owner of nothing)
    kept = owners[1::2]
    dump = store.dump()
    assert sorted(r[3] for r in dump["namespaces"]) == kept
    assert sorted({r[4].split("/")[0] for r in dump["ports"]}) == kept
    assert len(dump["ports"]) == 2 * len(kept)
    assert sorted(r[2] for r in dump["addresses"]) == kept
    assert sorted(r[0] for r in dump["idents"]) == kept
    cursors = store.read(lambda tx: [tx.next_cursor(f"ip:{o}/10.0.0.0/24", 0) for o in owners])
    assert cursors == [0 if o in gone else 5 for o in owners]


def _forget_one_by_one(c: sqlite3.Connection, owner: str) -> None:
    """Tx.forget as it was before forget_all (session 11): the reference."""
    c.execute("DELETE FROM addresses WHERE owner = ?", (owner,))
    c.execute(
        "DELETE FROM ports WHERE owner = ? OR (owner >= ? || '/' AND owner < ? || '0')",
        (owner, owner, owner),
    )
    first = f"ip:{owner}/"
    c.execute("DELETE FROM cursors WHERE name >= ? AND name < ?", (first, first[:-1] + "0"))
    c.execute("DELETE FROM published WHERE endpoint = ? OR owner = ?", (owner, owner))
    for table, column in [("endpoints", "id"), ("networks", "id"), ("revive", "network")]:
        c.execute(f"DELETE FROM {table} WHERE {column} = ?", (owner,))
    for table in ("namespaces", "leases", "idents", "shared"):
        c.execute(f"DELETE FROM {table} WHERE owner = ?", (owner,))


@pytest.mark.parametrize("forget", ["a", "a/1", "ab a0 a", "a/ a/1/x b", "every"])
def test_forget_all_deletes_what_forgetting_each_owner_did(tmp_path: Path, forget: str) -> None:
    # owners that are prefixes of one another, with and without "/", in every table
    owners = ["a", "a/", "a/1", "a/1/x", "a0", "ab", "a.b", "b", "b/a", "%", "_"]
    gone = owners if forget == "every" else forget.split()

    def fill(tx: Any) -> None:
        for i, o in enumerate(owners):
            c = tx.c
            c.execute("INSERT INTO namespaces VALUES (?, 'h', 1, ?, 'active', 0)", (f"n{i}", o))
            c.execute("INSERT INTO idents VALUES (?, 'boot/1', NULL)", (o,))
            c.execute("INSERT INTO revive VALUES (?, 'h')", (o,))
            c.execute("INSERT INTO leases VALUES (?, ?, 1, 0)", (o, f"n{i}"))
            c.execute(
                "INSERT INTO networks VALUES (?, ?, 'bridge', 'h', '{}', '{}', '[]', 'active', 0)",
                (o, f"net{i}"),
            )
            c.execute(
                "INSERT INTO endpoints VALUES (?, 'x', ?, NULL, '{}', '[]', 'active', 0)",
                (o, f"w{i}"),
            )
            c.execute("INSERT INTO published VALUES (?, ?, '[]', '[]', 0, '[]')", (f"{o}#p", o))
            c.execute("INSERT INTO published VALUES (?, 'other', '[]', '[]', 0, '[]')", (o,))
            c.execute("INSERT INTO addresses VALUES ('net', ?, ?)", (f"10.0.0.{i}", o))
            c.execute("INSERT INTO ports VALUES ('h', 'tcp', '0.0.0.0', ?, ?, 'w')", (100 + i, o))
            c.execute("INSERT INTO shared VALUES ('h', ?, ?, '[]')", (f"k{i}", o))
            c.execute("INSERT INTO cursors VALUES (?, '5')", (f"ip:{o}/10.0.0.0/24",))

    def state(store: LocalStore) -> dict[str, Any]:
        out = store.dump()
        out["cursors"] = store.read(lambda tx: tx.c.execute("SELECT * FROM cursors").fetchall())
        return {k: sorted(map(repr, v)) for k, v in out.items()}

    expected, actual = LocalStore(tmp_path / "old"), LocalStore(tmp_path / "new")
    try:
        for s in (expected, actual):
            with s.transaction() as tx:
                fill(tx)
        before = state(actual)
        with expected.transaction() as tx:
            for owner in gone:
                _forget_one_by_one(tx.c, owner)
        with actual.transaction() as tx:
            tx.forget_all(gone)
        assert state(actual) == state(expected)
        assert state(actual) != before  # (it did delete)
    finally:
        expected.close()
        actual.close()


def test_a_teardown_ends_only_the_failed_teardowns_it_redid(store: LocalStore) -> None:
    owners = {"j1": '["a"]', "j2": '["a", "b"]', "j3": '["a", "c"]', "j4": "[]", "j5": '["b"]'}
    owners |= {"me": '["a", "b"]', "j6": '["b", "d"]'}
    with store.transaction() as tx:
        for id, owner in owners.items():
            kind = "setup" if id == "j5" else "teardown"
            tx.journal_begin(id=id, kind=kind, owner=owner, pid=111, started=1.0, plan=[])
            if id not in ("me", "j6"):  # j6: a teardown running right now
                tx.journal_fail(id)
        for owner in "abcd":
            tx.reserve_port("h", "tcp", "0.0.0.0", ord(owner), owner, owner)
    with store.transaction() as tx:
        assert tx.teardown_done("me", ["a", "b"]) == {"a", "b"}
    # j3 has work for "c" left, j6 for "d"; j4 belongs to nobody in particular; j5 is a
    # setup; "a" and "b" stay reserved until j3 and j6 end, whose ops would undo theirs
    left = sorted(j["id"] for j in store.read(lambda tx: tx.journals()))
    assert left == ["j3", "j4", "j5", "j6"]
    assert [p["owner"] for p in store.read(lambda tx: tx.ports())] == list("abcd")
    with store.transaction() as tx:
        assert tx.teardown_done("j3", ["a", "c"]) == set()
        assert tx.teardown_done("j6", ["b", "d"]) == set()
    assert [p["owner"] for p in store.read(lambda tx: tx.ports())] == []


def test_the_admissions_log_keeps_the_last_ones_only(tmp_path, monkeypatch) -> None:
    from hostnet.stores import local

    monkeypatch.setattr(local, "KEEP_ADMISSIONS", 5)
    store = local.LocalStore(tmp_path)
    for i in range(12):
        with store.transaction() as tx:
            tx.record_admission("", f"w{i}", "host port 80", "admitted", "allowed")
    kept = store.read(lambda tx: tx.admissions())
    assert [a["workload"] for a in kept] == [f"w{i}" for i in range(7, 12)]
    store.close()


def test_a_locked_or_damaged_store_says_what_stands_in_the_way(tmp_path: Path) -> None:
    LocalStore(tmp_path).close()
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # (an sqlite3 session left in a transaction)
    try:
        with pytest.raises(StoreError, match=r"write lock .*fuser"):
            LocalStore(tmp_path, timeout=0.2)  # (opening takes the write lock too)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "state.db").write_bytes(b"not sqlite at all " * 500)
    with pytest.raises(StoreError, match="damaged; move it away"):
        LocalStore(damaged)


def test_a_store_deleted_under_an_open_one_or_emptied_is_refused(tmp_path: Path) -> None:
    import shutil

    store = LocalStore(tmp_path / "a")
    try:
        shutil.rmtree(tmp_path / "a")
        with pytest.raises(StoreError, match="deleted while"), store.transaction():
            pass
    finally:
        store.close()
    LocalStore(tmp_path / "b").close()
    (tmp_path / "b" / "state.db").write_bytes(b"")
    with pytest.raises(StoreError, match="is empty"):
        LocalStore(tmp_path / "b")


def _first_start(state_dir: str, barrier: Any, results: Any) -> None:
    """Runs in a forked process: open a store that may not exist yet."""
    try:
        barrier.wait(timeout=30)
        LocalStore(state_dir).close()
        results.put("ok")
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(repr(exc))


def test_processes_starting_at_once_on_a_new_state_dir_all_open_it(tmp_path: Path) -> None:
    """The first start on a state directory, in several processes at once (test
    workers, CLI commands): each must find no store or a whole one. SQLite makes an
    empty file first, which a store that has been used never is (a truncated one: the
    check above); the others took the one being made for a damaged store (found by a
    review: 18 of 60 rounds of 6 processes failed)."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(12):
        state_dir = tmp_path / f"s{round_}"
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_first_start, args=(str(state_dir), barrier, results))
                 for _ in range(6)]  # fmt: skip
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok"] * 6
        assert sorted(f.name for f in state_dir.iterdir()) == ["state.db"]  # (nothing left)


class _InterruptedAfter:
    """A connection whose ``statement`` runs and is then interrupted (a Ctrl-C whose
    handler runs as soon as the statement returns: one that came while BEGIN waited
    for another process's write lock)."""

    def __init__(self, conn: sqlite3.Connection, statement: str) -> None:
        self.conn, self.statement, self.fired = conn, statement, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, sql: str, *args: Any) -> Any:
        result = self.conn.execute(sql, *args)
        if sql == self.statement and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return result


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE", "BEGIN"])
def test_an_interrupt_just_after_begin_leaves_no_transaction_open(
    store: LocalStore, statement: str
) -> None:
    """The write lock stayed held: every later call of the process failed ("cannot
    start a transaction within a transaction"), and every other process's writes
    waited and failed, until the process exited (found by a fuzz)."""
    real = store._conn()
    store._local.conn = _InterruptedAfter(real, statement)
    with pytest.raises(KeyboardInterrupt):
        if statement == "BEGIN":
            store.read(lambda tx: tx.namespaces())
        else:
            with store.transaction() as tx:
                tx.add_namespace("a", "", created=True, owner="ns:a")
    assert not real.in_transaction
    other = sqlite3.connect(store.path, timeout=0.1, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # (the write lock is free)
    other.execute("ROLLBACK")
    other.close()
    with store.transaction() as tx:
        tx.add_namespace("b", "", created=True, owner="ns:b")
    assert [r["name"] for r in store.read(lambda tx: tx.namespaces())] == ["b"]


def test_networks_are_read_by_id_and_without_their_plans_when_asked(store: LocalStore) -> None:
    """A call made for one endpoint reads only the networks it needs, without their
    applied plans (several KB of JSON each): its cost must not grow with the number
    of networks (a workload on several networks, a host with hundreds)."""
    with store.transaction() as tx:
        for name, host in (("a", ""), ("b", ""), ("c", ""), ("d", "other")):
            tx.add_network(
                id=name * 64, name=name, driver="bridge", host=host, spec={}, data={"k": name}
            )
            tx.activate("networks", "id", name * 64, [{"op": "AddLink", "ns": None}])
    every = store.read(lambda tx: tx.networks(""))
    assert [n["name"] for n in every] == ["a", "b", "c"]
    assert all(n["applied"] == [{"op": "AddLink", "ns": None}] for n in every)
    light = store.read(lambda tx: tx.networks("", applied=False, ids=["c" * 64, "d" * 64]))
    assert [(n["name"], n["data"], "applied" in n) for n in light] == [("c", {"k": "c"}, False)]
    assert store.read(lambda tx: tx.networks(ids=["d" * 64, "a" * 64]))[1]["host"] == "other"
    assert store.read(lambda tx: tx.networks("", ids=[])) == []


def test_a_state_dir_without_hard_links_still_gets_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the filesystem has no hard links, the store is made in place by SQLite, as
    before; nothing is left of the attempt."""
    import errno
    import os

    def refused(src: str, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)
    store = LocalStore(tmp_path / "s")
    try:
        with store.transaction() as tx:
            tx.add_namespace("a", "", created=True, owner="ns:a")
        assert [r["name"] for r in store.read(lambda tx: tx.namespaces())] == ["a"]
    finally:
        store.close()
    assert sorted(f.name for f in (tmp_path / "s").iterdir()) == ["state.db"]


def test_a_new_store_is_made_with_the_umask_and_its_errors_are_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store file gets the mode SQLite would give it (0644 less the umask), and a
    state directory where nothing can be made gives a StoreError that says why, not
    the filesystem's bare error (found by a review)."""
    import errno
    import os

    previous = os.umask(0o077)
    try:
        LocalStore(tmp_path / "private").close()
    finally:
        os.umask(previous)
    assert (tmp_path / "private" / "state.db").stat().st_mode & 0o777 == 0o600

    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if ".state.db." in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StoreError, match="read-only"):
        LocalStore(tmp_path / "ro")


def test_what_a_process_killed_while_making_a_store_left_is_swept(tmp_path: Path) -> None:
    """A process killed while making a store leaves its files, and after the link one
    of them is a second name of the store itself, which nothing must ever open: the
    next start removes those older than a making still under way."""
    import os
    import time

    state = tmp_path / "s"
    LocalStore(state).close()
    stale = state / ".state.db.0123456789abcdef"
    os.link(state / "state.db", stale)  # killed after the link
    (state / ".state.db.00000000deadbeef").write_bytes(b"half a store")  # before it
    (state / ".state.db.00000000deadbeef-wal").write_bytes(b"")
    young = state / ".state.db.fedcba9876543210"  # another process making one now
    young.write_bytes(b"")
    old = time.time() - 3600  # (not the store's second name: its age is the store's)
    for name in (state / ".state.db.00000000deadbeef", state / ".state.db.00000000deadbeef-wal"):
        os.utime(name, (old, old))
    os.utime(young, None)
    LocalStore(state).close()
    assert sorted(f.name for f in state.iterdir()) == sorted(["state.db", young.name])
    assert (state / "state.db").stat().st_nlink == 1
