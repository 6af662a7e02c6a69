"""State stores. ``local`` (SQLite, embedded) is the default and needs nothing else."""

from __future__ import annotations

from hostnet.stores.local import LocalStore, Tx, default_state_dir

__all__ = ["LocalStore", "Tx", "default_state_dir"]
