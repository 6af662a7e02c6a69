"""The executor: the only code that applies ops, and the only code that journals them.

Invariants:

Rule 1. A plan is journaled (in the same store transaction that records what it is for:
        pending records, address and port allocations, all tagged with an owner id)
        before its first op touches the kernel. Progress is recorded after every op.
Rule 2. Setup either completes or is rolled back: on the first failure the inverses of
        the completed ops are applied in reverse, every rollback error is collected (not
        just the first), then the owner's records are forgotten. The caller gets the
        original error, or ApplyError when the rollback itself failed; then the records
        stay and the journal becomes a failed teardown of the inverses that failed.
Rule 3. Teardown goes through every op whatever fails, treats "already gone" as done,
        and reports every failure at the end. Its plan comes from what was recorded.
Rule 4. A journal left behind by a dead process is finished by ``recover``: a setup is
        rolled back (including the op that may have been in flight), a teardown is run
        again. Ops are safe to repeat because "already gone" counts as success.
Rule 5. A journal records which namespace each name it acts in stood for (its bind
        mount, and the mount namespace that was read in; a namespace the plan makes,
        as soon as it is made; the root namespace's identity). ``recover`` skips the
        ops in a namespace deleted or made again under its name since: what they were
        for went with the old one, and the new one is not hostnet's to change. It
        deletes a link hostnet gave a MAC only while the link has it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import psutil

from hostnet import errors
from hostnet.backends.base import Backend
from hostnet.ops import (
    BARE,
    SAME_NS,
    CreateNamespace,
    DeleteNamespace,
    DelLink,
    NftBatch,
    Op,
    Plan,
    plan_from_json,
    plan_to_json,
    split_nft,
    token_parts,
)
from hostnet.stores.local import LocalStore, Tx

Prepare = Callable[[Tx], Plan]
TeardownPrepare = Callable[[Tx], tuple[Plan, Sequence[str]]]
Commit = Callable[[Tx, Plan], None]


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (None if there is none): with the pid, what tells a
    live process from a later one given the same pid."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            # dead, not yet reaped (but a process whose main thread exited while others
            # run on shows as a zombie too: it lives)
            if process.status() == psutil.STATUS_ZOMBIE and process.num_threads() <= 1:
                return None
            return process.create_time()
    except psutil.Error:
        return None


@attrs.frozen(kw_only=True)
class Recovered:
    """What ``recover`` did with one journal."""

    journal: str
    kind: str
    owners: tuple[str, ...]
    ops: int
    errors: tuple[str, ...] = ()
    #: ops not applied because their namespace is not the one journaled (Rule 5)
    skipped: int = 0
    #: what the owners stood for ("app on web", "network web", "namespace app")
    names: tuple[str, ...] = ()


class Executor:
    """Applies plans through ``backend``, journaled in ``store`` (None: no journal, for
    throwaway use such as dry runs in tests)."""

    def __init__(self, backend: Backend, store: LocalStore | None) -> None:
        self.backend = backend
        self.store = store
        self.rebuild_wait = 10.0  # seconds a change waits for a firewall rebuild
        self.pid = os.getpid()
        self.started = process_started(self.pid) or 0.0
        # Journals of this process that a store error left open (a full disk, a lock
        # held too long) after the kernel side was rolled back or finished: no other
        # process recovers them while this one lives, so this one does, at its next
        # apply or teardown, or in recover (gc).
        self._stranded: set[str] = set()

    # -- setup -------------------------------------------------------------------------

    def apply(
        self,
        prepare: Prepare | Plan,
        *,
        owner: str,
        commit: Commit | None = None,
    ) -> Plan:
        """Journal and apply a plan; roll back on failure.

        ``prepare(tx)`` runs inside the journaling transaction: it allocates what the
        plan needs, writes pending records and returns the plan, so two processes never
        plan with the same address or port. ``commit(tx, plan)`` runs in the closing
        transaction (mark records active, store the applied plan); if it fails, the
        plan is rolled back too.
        """
        journal = uuid.uuid4().hex
        moved: dict[str, tuple[str | None, str]] = {}
        self.retry_stranded()
        if self.store is None:
            plan = prepare if isinstance(prepare, tuple) else prepare(_NO_TX)
        else:
            try:
                for _ in self._after_rebuilds():
                    with self.store.transaction() as tx:
                        if self._rebuilding(tx):
                            continue
                        plan = prepare if isinstance(prepare, tuple) else prepare(tx)
                        moved = tx.moved
                        self._journal(tx, journal, "setup", [owner], plan)
                        break
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # an interrupt (Ctrl-C, SIGTERM) can land just as the journaling
                    # transaction commits: nothing is applied yet, so forget what it
                    # recorded now; left, it would hold its records (and block shared
                    # setup for everyone) for as long as this process lives
                    self._abandon(journal, owner, moved)
                raise
        entered: list[bool] = []
        try:
            return self._apply_journaled(journal, owner, plan, commit, moved, entered)
        except errors.StoreError:
            self._stranded.add(journal)  # (if it was closed after all: nothing to do)
            raise
        except BaseException:
            if not entered and self.store is not None:  # (before its rollback could)
                self._abandon(journal, owner, moved)
            raise

    def _apply_journaled(
        self,
        journal: str,
        owner: str,
        plan: Plan,
        commit: Commit | None,
        moved: Mapping[str, tuple[str | None, str]],
        entered: list[bool] | None = None,
    ) -> Plan:
        done: list[Op] = []
        # the op being applied: an interrupt (Ctrl-C, SIGTERM) can land just after the
        # kernel did it and before it is counted, so the rollback undoes it too
        # (tolerating "gone"), as recovery does for op #done (Rule 4)
        current: list[Op] = []
        # the names taken for the namespaces the plan makes: the token tells the one
        # made on it from one made later under that name by someone else (Rule 5)
        reserved: dict[str, str] = {}
        try:
            if entered is not None:
                entered.append(True)  # from here on, the rollback below owns the journal
            for index, op in enumerate(plan):
                current[:] = [op]
                if self.store is not None and isinstance(op, CreateNamespace):
                    reserved[op.ns] = self.backend.reserve_namespace(op.ns)
                    self.store.journal_place(journal, index, _token_places(op.ns, reserved[op.ns]))
                self.backend.apply(op)
                done.append(op)
                current.clear()
                if (
                    self.store is not None
                    and isinstance(op, CreateNamespace)
                    and (
                        index + 1 < len(plan)
                        or not self.backend.reservation_is_unique(reserved[op.ns])
                    )
                ):
                    # which namespace it made (Rule 5): a rollback after a crash must
                    # not delete one someone else makes under that name meanwhile, nor
                    # apply later ops in it. Made by the last op on a reservation whose
                    # token no later file can have, the token tells it apart alone,
                    # and the closing transaction comes next (one write fewer)
                    made = self._made_place(op.ns)
                    if made:
                        self.store.journal_place(journal, index + 1, made)
                        continue
                # Not after the last op: the closing transaction ends the journal, and
                # recovery treats op #done as possibly applied anyway (Rule 4).
                if self.store is not None and index + 1 < len(plan):
                    self.store.journal_progress(journal, index + 1)
            if self.store is not None:
                with self.store.transaction() as tx:
                    if commit is not None:
                        commit(tx, plan)
                    tx.journal_end(journal)
            elif commit is not None:
                commit(_NO_TX, plan)
        except BaseException as exc:
            failed = plan[min(len(done), len(plan) - 1)] if plan else None
            # (an op that failed with an error of its own changed nothing: backends undo
            # what a failing op did; one interrupted may have been done. A namespace's
            # name may have been taken for it, whatever happened after: given back; one
            # made on it is deleted, never one of that name made by someone else.)
            interrupted = not isinstance(exc, Exception)
            unsure: list[Op] = []
            for op in current:
                if done and done[-1] is op:
                    continue
                if isinstance(op, CreateNamespace):  # (an interrupt in reserve_namespace
                    # may have left its empty file: removed, never a namespace)
                    token = reserved.get(op.ns, BARE if interrupted else None)
                    if token is not None:
                        file, rest = token_parts(token)
                        unsure.append(DeleteNamespace(ns=op.ns, reserved=file, handle=rest))
                elif interrupted:
                    unsure.append(_guard(op.inverse()))
            self._roll_back(journal, owner, done, exc, failed, moved, unsure=unsure)
            raise  # _roll_back raises ApplyError itself when the rollback failed
        return plan

    def _roll_back(
        self,
        journal: str,
        owner: str,
        done: Sequence[Op],
        exc: BaseException,
        failed: Op | None,
        moved: Mapping[str, tuple[str | None, str]],
        *,
        unsure: Sequence[Op] = (),
    ) -> None:
        """Undo ``done``, and first the inverses ``unsure`` (of an op an interrupt came
        during, done or not, guarded as recovery guards them: a link only if it has the
        MAC hostnet gave it, since one of that name may be another's). A clean rollback
        forgets the owner's records and puts back the allocation cursors its plan moved
        (``moved``), so nothing shows it was tried; a rollback with errors keeps them
        and turns the journal into a failed teardown of exactly the inverses that
        failed, which ``recover`` (``hostnet gc``) retries. Forgetting them instead
        would let a later retry remove objects someone created since."""
        unsure = [self._pinned(journal, op) for op in unsure]
        left = self._undo_inverses([*unsure, *(op.inverse() for op in reversed(done))])
        if self.store is not None:
            with self.store.transaction() as tx:
                if left:
                    tx.journal_replace(
                        journal, kind="teardown", plan=plan_to_json(tuple(op for op, _ in left))
                    )
                else:
                    tx.forget(owner)
                    tx.restore_cursors(moved)
                    tx.journal_end(journal)
        if left:
            raise errors.ApplyError(failed, exc, [err for _, err in left]) from exc
        if isinstance(exc, errors.HostnetError) and failed is not None:
            exc.add_note(f"while applying {failed}; {len(done)} earlier op(s) rolled back")

    def undo(self, done: Sequence[Op]) -> list[tuple[Op, BaseException]]:
        """Apply the inverses of ``done`` in reverse; skip "gone"; return the inverses
        that failed, with their errors, in the order they were tried."""
        return self._undo_inverses([op.inverse() for op in reversed(done)])

    def _undo_inverses(self, inverses: Sequence[Op]) -> list[tuple[Op, BaseException]]:
        left: list[tuple[Op, BaseException]] = []
        for inverse in inverses:
            try:
                self.backend.apply(inverse)
            except errors.NotFoundError:
                continue
            except Exception as err:  # collected, reported together
                left.append((inverse, err))
        return left

    # -- teardown ----------------------------------------------------------------------

    def teardown(
        self,
        prepare: TeardownPrepare | Plan,
        *,
        owners: Sequence[str] = (),
        what: str,
    ) -> None:
        """Apply every op of a teardown plan; then forget its owners. Raises
        TeardownError listing every failure (the records stay, and ``recover`` retries).

        ``prepare(tx)`` runs inside the journaling transaction and returns ``(plan,
        owners)``: it reads the records to undo and marks them as being deleted, so no
        other call plans with them meanwhile."""
        journal = uuid.uuid4().hex
        self.retry_stranded()
        if self.store is None:
            if isinstance(prepare, tuple):
                plan = prepare
            else:
                plan, owners = prepare(_NO_TX)
        else:
            try:
                for _ in self._after_rebuilds():
                    with self.store.transaction() as tx:
                        if self._rebuilding(tx):
                            continue
                        if isinstance(prepare, tuple):
                            plan = prepare
                        else:
                            plan, owners = prepare(tx)
                        self._journal(tx, journal, "teardown", owners, plan)
                        break
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    self._fail_interrupted(journal)  # (if it committed after all)
                raise
        # No per-op progress: recovering a teardown runs its whole plan again (Rule 4).
        try:
            problems = self._run_tolerant(plan)
            if self.store is not None:
                try:
                    with self.store.transaction() as tx:
                        if problems:
                            tx.journal_fail(journal)
                        else:
                            tx.teardown_done(journal, owners)
                except errors.StoreError:
                    self._stranded.add(journal)
                    raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # An interrupt (Ctrl-C, SIGTERM) in a process that lives on: left open,
                # the journal would look like work in flight until the process exits,
                # holding its records; as a failed teardown, gc finishes it (Rule 3), and
                # so does a retry of the call. (Ended already: nothing to do.)
                self._fail_interrupted(journal)
            raise
        if problems:
            raise errors.TeardownError(what, problems)

    def _journal(self, tx: Tx, journal: str, kind: str, owners: Sequence[str], plan: Plan) -> None:
        """Journal ``plan`` before it is applied (Rule 4), with the places it acts in."""
        tx.journal_begin(
            id=journal,
            kind=kind,
            owner=json.dumps(list(owners)),
            pid=self.pid,
            started=self.started,
            plan=plan_to_json(plan),
            places=self._places(plan),
        )

    def _abandon(
        self, journal: str, owner: str, moved: Mapping[str, tuple[str | None, str]]
    ) -> None:
        """A setup journal an interrupt may have committed before any op ran: if it was,
        forget its records and cursor moves and end it (a clean rollback of nothing)."""
        assert self.store is not None
        try:
            with self.store.transaction() as tx:
                if tx.journal_exists(journal):
                    tx.forget(owner)
                    tx.restore_cursors(moved)
                    tx.journal_end(journal)
        except BaseException:
            self._stranded.add(journal)  # recovered at this process's next call, or gc

    def _fail_interrupted(self, journal: str) -> None:
        """A teardown journal an interrupt cut short: a failed teardown now (if there
        is one by that id)."""
        if self.store is None:
            return
        try:
            with self.store.transaction() as tx:
                tx.journal_fail(journal)
        except BaseException:
            self._stranded.add(journal)

    def _run_tolerant(self, plan: Plan) -> list[BaseException]:
        problems: list[BaseException] = []
        for op in plan:
            try:
                self.backend.apply(op)
            except errors.NotFoundError:
                # An nftables batch is atomic: one missing element refuses the whole
                # batch. Apply its commands one by one so the rest still go.
                parts = split_nft(op) if isinstance(op, NftBatch) else ()
                if len(parts) > 1:
                    problems += self._run_tolerant(parts)
            except Exception as exc:
                problems.append(exc)
        return problems

    # -- firewall rebuilds -------------------------------------------------------------

    def _rebuilding(self, tx: Tx) -> bool:
        """Whether a live process is rebuilding a host's firewall (``Controller.gc``):
        its replay was planned from the records as they were, so a change journaled now
        could be undone by it, or undo it."""
        # (instr, not LIKE: SQLite prepares a LIKE with a bound pattern again at every
        # run, which costs a connect 25 us)
        rows = tx.c.execute("SELECT pid, started FROM journal WHERE instr(owner, ?)", (REBUILDS,))
        return any(process_started(pid) == started for pid, started in rows.fetchall())

    def _after_rebuilds(self) -> Iterator[None]:
        """Attempts at a journaling transaction, a moment apart while a firewall
        rebuild runs (it takes milliseconds); errors.Busy after ``rebuild_wait`` s."""
        wait = self.rebuild_wait
        deadline = time.monotonic() + wait
        while True:
            yield
            if time.monotonic() > deadline:
                raise errors.Busy("the host's firewall", "a rebuild by `hostnet gc`", wait)
            time.sleep(0.005)

    # -- where ops act -----------------------------------------------------------------

    def _places(self, plan: Plan) -> dict[str, str]:
        """The namespaces ``plan`` acts in (those it makes itself aside), each with its
        bind mount now, "" for one that does not exist, and the mount namespace they
        were read in (VIEW); the root namespace (ROOT) with its identity, which changes
        with a reboot (Rule 5); RESERVES if it makes namespaces (_apply_journaled)."""
        made = {op.ns for op in plan if isinstance(op, CreateNamespace)}
        out: dict[str, str] = {RESERVES: "1"} if made else {}
        for name in set().union(*map(namespaces_of, plan)) - made:
            now = self._where(name)
            if now is not None:  # None: the kernel cannot tell; no guard then
                out[name] = now
        if out.keys() - {ROOT, RESERVES}:
            view = self.backend.mount_view()
            if view is None:
                return {k: v for k, v in out.items() if k in (ROOT, RESERVES)}
            out[VIEW] = view
        return out

    def _made_place(self, name: str) -> dict[str, str]:
        """The place entries of namespace ``name``, just made (none if the kernel
        cannot tell)."""
        try:
            mount = self.backend.namespace_mount(name)
        except errors.NamespaceNotFound:
            return {}
        view = self.backend.mount_view()
        return {} if mount is None or view is None else {name: mount, VIEW: view}

    def _where(self, name: str) -> str | None:
        if name == ROOT:
            return self.backend.namespace_id(None)
        try:
            return self.backend.namespace_mount(name)
        except errors.NamespaceNotFound:
            return ""

    def _judge(self, places: Mapping[str, str]) -> tuple[set[str], dict[str, str] | None]:
        """The names in ``places`` that now stand for no namespace, or another; and the
        mounts recorded, if they can be compared here (None: read in another mount
        namespace, where the same bind mount has another id: no telling, so named
        namespaces are not judged, as before journals had places)."""
        view = places.get(VIEW)
        mounts = (
            {k: v for k, v in places.items() if k != ROOT and not k.startswith("@")}
            if view is not None and view == self.backend.mount_view()
            else None
        )
        moved = set()
        for name, then in places.items():
            if name.startswith("@") or (name != ROOT and mounts is None):
                continue  # (VIEW, RESERVES, reservations: not namespaces)
            now = self._where(name)
            if now is not None and now != then:
                moved.add(name)
        return moved, mounts

    def _undo_of(
        self, op: Op, places: Mapping[str, str], moved: set[str], mounts: dict[str, str] | None
    ) -> Op | None:
        """The inverse of setup op ``op`` as recovery may apply it, None to skip it. A
        namespace the plan made is deleted only if made on the reservation recorded. If
        the journal records reservations and has none for it, the process died before
        it took the name, or just after: a namespace of that name is someone else's,
        an empty file (its reservation, or another's left) is removed."""
        inverse = op.inverse()
        if isinstance(op, CreateNamespace):
            token = places.get(_reserved(op.ns))
            if token is not None:
                handle = places.get(_handle(op.ns))
                inverse = DeleteNamespace(ns=op.ns, reserved=token, handle=handle)
            elif RESERVES in places and op.ns not in places:
                inverse = DeleteNamespace(ns=op.ns, reserved=BARE)
        return self._guarded(inverse, places, moved, mounts)

    def _pinned(self, journal: str, op: Op) -> Op:
        """A namespace delete guarded by its reservation's token alone, with the mount
        of what it is about to delete recorded first, and guarded by it too. Should the
        process die after the delete and before the journal ends, someone may make a
        namespace of that name whose file has the token again (the kernel reuses the
        inode at once): the mount, never reused, tells it apart, and recovery leaves it
        (found by a SIGKILL fuzz)."""
        if (
            self.store is None
            or not isinstance(op, DeleteNamespace)
            or not op.reserved
            or op.mount is not None
        ):
            return op
        made = self._made_place(op.ns)
        if not made:
            return op  # (nothing there, or the kernel cannot tell)
        self.store.journal_note(journal, made)
        return attrs.evolve(op, mount=made[op.ns])

    def _guarded(
        self, op: Op, places: Mapping[str, str], moved: set[str], mounts: dict[str, str] | None
    ) -> Op | None:
        """``op`` as recovery may apply it, None to skip it (Rule 5). A namespace delete
        is not skipped: its own guard tells a file left by a delete cut short (to
        remove) from another namespace (to leave alone); it gets the journal's mount
        when it has none (a namespace hostnet adopted), and loses one read in another
        mount namespace."""
        if isinstance(op, DeleteNamespace):
            if mounts is None:
                return attrs.evolve(op, mount=None) if VIEW in places else op
            if op.mount is None and op.ns in mounts:
                return attrs.evolve(op, mount=mounts[op.ns])
            return op
        if namespaces_of(op) & moved:
            return None
        # a link of that name may have been made by someone else since it was planned:
        # deleted only if it has the MAC hostnet gave it
        return attrs.evolve(op, same_mac=True) if isinstance(op, DelLink) else op

    # -- recovery ----------------------------------------------------------------------

    def retry_stranded(self) -> None:
        """Recover this process's journals that a store error left open, now that the
        store may work again (if it does not yet, the next call tries again)."""
        if self._stranded and self.store is not None:
            with contextlib.suppress(errors.StoreError):
                self.recover(failed=False, only=frozenset(self._stranded))

    def recover(
        self, *, failed: bool = True, only: frozenset[str] | None = None
    ) -> list[Recovered]:
        """Finish or roll back journals whose process died (or that a store error left
        open in this one) and, with ``failed``, retry those that ended with errors
        (failed teardowns and rollbacks); ``only``: just the journals of these ids."""
        if self.store is None:
            return []
        report = []
        for entry in self.store.read(lambda tx: tx.journals()):
            if only is not None and entry["id"] not in only:
                continue
            alive = (
                process_started(entry["pid"]) == entry["started"]
                and entry["id"] not in self._stranded
            )
            if alive and (not entry["failed"] or entry["retrying"]):
                continue  # a live process is applying or retrying it right now
            if not failed and alive:
                continue
            with self.store.transaction() as tx:
                claimed = tx.journal_claim(entry, self.pid, self.started)
            if not claimed:
                continue
            try:
                report.append(self._recover_one(entry))
                self._stranded.discard(entry["id"])
            except (ValueError, KeyError, TypeError) as exc:  # a journal we cannot read
                with self.store.transaction() as tx:
                    tx.journal_fail(entry["id"])
                report.append(
                    Recovered(
                        journal=entry["id"],
                        kind=entry["kind"],
                        owners=(),
                        ops=0,
                        errors=(f"unreadable journal: {exc}",),
                    )
                )
        return report

    def _recover_one(self, entry: dict[str, Any]) -> Recovered:
        assert self.store is not None
        plan = plan_from_json(entry["plan"])
        owners = tuple(json.loads(entry["owner"]))
        names = tuple(self.store.read(lambda tx: tx.owner_names(owners)))  # (before forgotten)
        places = entry.get("places") or {}
        moved, mounts = self._judge(places)
        if entry["kind"] == "setup":
            # ops [0, done) completed; op #done may have been in flight when it died.
            # Also in a failed one: a setup journal is marked failed only by a
            # recovery that could not read it (an older hostnet meeting an op it does
            # not know), after its process died, op #done in doubt all the same.
            end = entry["done"] + 1
            touched = plan[: min(end, len(plan))]
            # undone in reverse: the inverses to apply, in that order
            todo = [self._undo_of(op, places, moved, mounts) for op in reversed(touched)]
            todo = [self._pinned(entry["id"], op) if op else None for op in todo]
            left = self._undo_inverses([i for i in todo if i])
            problems = [err for _, err in left]
            ops, skipped = len(touched) - todo.count(None), todo.count(None)
        else:
            todo = [self._guarded(op, places, moved, mounts) for op in plan]
            problems = self._run_tolerant(tuple(i for i in todo if i))
            ops, skipped = len(plan) - todo.count(None), todo.count(None)
        with self.store.transaction() as tx:
            if problems and entry["kind"] == "setup":
                # a failed teardown of exactly the inverses that failed, as _roll_back
                # leaves one (retried as a failed setup, the op in doubt would be left)
                plan_left = tuple(op for op, _ in left)
                tx.journal_replace(entry["id"], kind="teardown", plan=plan_to_json(plan_left))
            elif problems:
                tx.journal_fail(entry["id"])
            elif entry["kind"] == "teardown":  # as Executor.teardown does
                tx.teardown_done(entry["id"], owners)
            else:
                tx.forget_all(owners)
                tx.journal_end(entry["id"])
        return Recovered(
            journal=entry["id"],
            kind=entry["kind"],
            owners=owners,
            ops=ops,
            errors=tuple(map(str, problems)),
            skipped=skipped,
            names=names,
        )


#: The owner of a firewall rebuild's journal starts so (``Controller._restore_firewall``)
REBUILD_OWNER = "restore:"
#: found in the journal's JSON list of owners while a rebuild runs
REBUILDS = f'"{REBUILD_OWNER}'
#: ``namespaces_of``'s name for the root namespace (never a namespace's name)
ROOT = ""
#: In a journal's places: the mount namespace its mounts were read in
VIEW = "@view"
#: In a journal's places: its process records the names it takes for the namespaces
#: its plan makes (``_reserved``), before making them
RESERVES = "@reserves"


def _guard(inverse: Op) -> Op:
    """``inverse`` of an op that may not have been applied: a link is deleted only if it
    has the MAC hostnet would have given it (recovery's guard)."""
    return attrs.evolve(inverse, same_mac=True) if isinstance(inverse, DelLink) else inverse


def _reserved(name: str) -> str:
    """The key of a namespace's reservation token in a journal's places."""
    return f"@reserved:{name}"


def _handle(name: str) -> str:
    """The key of the rest of that token (``token_parts``), where it has one."""
    return f"@handle:{name}"


def _token_places(name: str, token: str) -> dict[str, str]:
    """A reservation token as a journal's places record it: in two parts, so that an
    older version reads the one it knows (``token_parts``)."""
    file, rest = token_parts(token)
    out = {_reserved(name): file}
    if rest is not None:
        out[_handle(name)] = rest
    return out


def namespaces_of(op: Op) -> set[str]:
    """The namespaces ``op`` acts in (the root one as ROOT): its own and any other it
    names (a veth peer's, a macvlan parent's, where a link moves to)."""
    names = {op.ns}
    for field in ("peer_ns", "parent_ns", "to_ns"):
        other = getattr(op, field, SAME_NS)
        if other != SAME_NS:
            names.add(other)
    return {ROOT if name is None else name for name in names}


class _NoTx:
    """Stands in for a transaction when there is no store; any use is a bug."""

    def __getattr__(self, name: str) -> Any:
        raise errors.HostnetError(f"no store: cannot call Tx.{name}")


_NO_TX: Any = _NoTx()
