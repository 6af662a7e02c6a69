"""The executor: the only code that applies ops, and the only code that journals them.

Invariants:

Rule 1. A plan is journaled (in the same store transaction that records what it is for:
        pending records, address and port allocations, all tagged with an owner id)
        before its first op touches the kernel. Progress is recorded after every op.
Rule 2. Setup either completes or is rolled back: on the first failure the inverses of
        the completed ops are applied in reverse, every rollback error is collected (not
        just the first), then the owner's records are forgotten. The caller gets the
        original error, or ApplyError when the rollback itself failed.
Rule 3. Teardown goes through every op whatever fails, treats "already gone" as done,
        and reports every failure at the end. Its plan comes from what was recorded.
Rule 4. A journal left behind by a dead process is finished by ``recover``: a setup is
        rolled back (including the op that may have been in flight), a teardown is run
        again. Ops are safe to repeat because "already gone" counts as success.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psutil

from hostnet import errors
from hostnet.backends.base import Backend
from hostnet.ops import Op, Plan, plan_from_json, plan_to_json
from hostnet.stores.local import LocalStore, Tx

Prepare = Callable[[Tx], Plan]
Commit = Callable[[Tx, Plan], None]


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
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


class Executor:
    """Applies plans through ``backend``, journaled in ``store`` (None: no journal, for
    throwaway use such as dry runs in tests)."""

    def __init__(self, backend: Backend, store: LocalStore | None) -> None:
        self.backend = backend
        self.store = store
        self._pid = os.getpid()
        self._started = _process_started(self._pid) or 0.0

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
        transaction (mark records active, store the applied plan).
        """
        journal = uuid.uuid4().hex
        if self.store is None:
            plan = prepare if isinstance(prepare, tuple) else prepare(_NO_TX)
        else:
            with self.store.transaction() as tx:
                plan = prepare if isinstance(prepare, tuple) else prepare(tx)
                tx.journal_begin(
                    id=journal,
                    kind="setup",
                    owner=json.dumps([owner]),
                    pid=self._pid,
                    started=self._started,
                    plan=plan_to_json(plan),
                )
        done: list[Op] = []
        try:
            for index, op in enumerate(plan):
                self.backend.apply(op)
                done.append(op)
                # Not after the last op: the closing transaction ends the journal, and
                # recovery treats op #done as possibly applied anyway (Rule 4).
                if self.store is not None and index + 1 < len(plan):
                    self.store.journal_progress(journal, index + 1)
        except BaseException as exc:
            failed = plan[min(len(done), len(plan) - 1)]
            rollback_errors = self.undo(done)
            if self.store is not None:
                with self.store.transaction() as tx:
                    tx.forget(owner)
                    if rollback_errors:
                        tx.journal_fail(journal)  # gc will try the rollback again
                    else:
                        tx.journal_end(journal)
            if rollback_errors:
                raise errors.ApplyError(failed, exc, rollback_errors) from exc
            if isinstance(exc, errors.HostnetError):
                exc.add_note(f"while applying {failed}; {len(done)} earlier op(s) rolled back")
            raise
        if self.store is not None:
            with self.store.transaction() as tx:
                if commit is not None:
                    commit(tx, plan)
                tx.journal_end(journal)
        elif commit is not None:
            commit(_NO_TX, plan)
        return plan

    def undo(self, done: Sequence[Op]) -> list[BaseException]:
        """Apply the inverses of ``done`` in reverse; collect errors, skip "gone"."""
        problems: list[BaseException] = []
        for op in reversed(done):
            try:
                self.backend.apply(op.inverse())
            except errors.NotFoundError:
                continue
            except Exception as exc:  # collected, reported together
                problems.append(exc)
        return problems

    # -- teardown ----------------------------------------------------------------------

    def teardown(self, plan: Plan, *, owners: Sequence[str], what: str) -> None:
        """Apply every op of ``plan``; then forget ``owners``. Raises TeardownError
        listing every failure (the records stay, and ``recover`` retries)."""
        journal = uuid.uuid4().hex
        if self.store is not None:
            with self.store.transaction() as tx:
                tx.journal_begin(
                    id=journal,
                    kind="teardown",
                    owner=json.dumps(list(owners)),
                    pid=self._pid,
                    started=self._started,
                    plan=plan_to_json(plan),
                )
        # No per-op progress: recovering a teardown runs its whole plan again (Rule 4).
        problems = self._run_tolerant(plan, None)
        if self.store is not None:
            with self.store.transaction() as tx:
                if problems:
                    tx.journal_fail(journal)
                else:
                    for owner in owners:
                        tx.forget(owner)
                    tx.journal_end(journal)
        if problems:
            raise errors.TeardownError(what, problems)

    def _run_tolerant(self, plan: Plan, journal: str | None) -> list[BaseException]:
        problems: list[BaseException] = []
        for index, op in enumerate(plan):
            try:
                self.backend.apply(op)
            except errors.NotFoundError:
                pass
            except Exception as exc:
                problems.append(exc)
            if self.store is not None and journal is not None:
                self.store.journal_progress(journal, index + 1)
        return problems

    # -- recovery ----------------------------------------------------------------------

    def recover(self) -> list[Recovered]:
        """Finish or roll back journals whose process died (or whose teardown failed)."""
        if self.store is None:
            return []
        report = []
        for entry in self.store.read(lambda tx: tx.journals()):
            alive = _process_started(entry["pid"]) == entry["started"]
            if alive and not entry["failed"]:
                continue  # another live process is applying it right now
            if alive and entry["pid"] == self._pid and not entry["failed"]:
                continue
            with self.store.transaction() as tx:
                claimed = tx.journal_claim(
                    entry["id"], entry["pid"], entry["started"], self._pid, self._started
                )
            if not claimed:
                continue
            report.append(self._recover_one(entry))
        return report

    def _recover_one(self, entry: dict[str, Any]) -> Recovered:
        assert self.store is not None
        plan = plan_from_json(entry["plan"])
        owners = tuple(json.loads(entry["owner"]))
        if entry["kind"] == "setup":
            # ops [0, done) completed; op #done may have been in flight when it died
            # A failed journal knows exactly what completed (the failing op changed
            # nothing: ops are atomic); only a crash leaves op #done in doubt.
            end = entry["done"] if entry["failed"] else entry["done"] + 1
            touched = plan[: min(end, len(plan))]
            problems = self.undo(touched)
            ops = len(touched)
        else:
            problems = self._run_tolerant(plan, None)
            ops = len(plan)
        with self.store.transaction() as tx:
            if problems:
                tx.journal_fail(entry["id"])
            else:
                for owner in owners:
                    tx.forget(owner)
                tx.journal_end(entry["id"])
        return Recovered(
            journal=entry["id"],
            kind=entry["kind"],
            owners=owners,
            ops=ops,
            errors=tuple(map(str, problems)),
        )


class _NoTx:
    """Stands in for a transaction when there is no store; any use is a bug."""

    def __getattr__(self, name: str) -> Any:
        raise errors.HostnetError(f"no store: cannot call Tx.{name}")


_NO_TX: Any = _NoTx()
