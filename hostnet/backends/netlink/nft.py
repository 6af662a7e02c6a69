"""A minimal ctypes binding of libnftables (the library behind the ``nft`` command).

One ``NftContext`` per namespace: libnftables opens its netlink socket when the context
is created, so the context is created from a thread inside the namespace and then used
from anywhere. Commands go in and listings come out as libnftables JSON. One call to
``run`` is one nftables transaction: the kernel applies all of it or none of it.

Why ctypes and not the ``nftables`` Python module: that module is not on PyPI (Debian
ships it as python3-nftables for the system Python only), and the five C functions hostnet
needs are a smaller dependency than a vendored copy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
from typing import Any

from hostnet import errors

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _load() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        for name in ("libnftables.so.1", ctypes.util.find_library("nftables")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError:
                continue
        else:
            raise errors.UnsupportedError(
                "libnftables is not installed; install it (Debian/Ubuntu: "
                "apt-get install libnftables1 nftables; Fedora: dnf install nftables)"
            )
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
        return lib


def available() -> bool:
    try:
        _load()
    except errors.UnsupportedError:
        return False
    return True


class NftContext:
    """Create it in the namespace it should act in (see nsenter.run_in)."""

    def __init__(self) -> None:
        self._lib = _load()
        ctx = self._lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise errors.KernelError("nft_ctx_new", ctypes.get_errno())
        self._ctx: int | None = ctx
        self._lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE)
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None

    def run(self, command: str | dict[str, Any], action: str = "nft") -> dict[str, Any] | None:
        """Run a JSON batch (or a text command) and return the parsed JSON output.

        Raises KernelError (NotFoundError for ENOENT, ConflictError for EEXIST) with
        libnftables' own message on failure.
        """
        text = command if isinstance(command, str) else json.dumps(command)
        with self._lock:
            if self._ctx is None:
                raise errors.HostnetError("nftables context is closed")
            # (what a run an interrupt cut short left in the buffers is not this run's:
            # read, each buffer is emptied)
            self._lib.nft_ctx_get_output_buffer(self._ctx)
            self._lib.nft_ctx_get_error_buffer(self._ctx)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        if rc != 0:
            message = err.decode(errors="replace").strip()
            raise translate(action, message)
        if not out.strip():
            return None
        result: dict[str, Any] = json.loads(out)
        return result


def translate(action: str, message: str) -> errors.HostnetError:
    """Map a libnftables error text to a hostnet error (libnftables reports strerror
    text, not an errno)."""
    first = message.splitlines()[0] if message else "failed"
    lowered = message.lower()
    if "no such file or directory" in lowered or "does not exist" in lowered:
        return errors.NotFoundError(f"{action}: {first}")
    if "file exists" in lowered:
        return errors.ConflictError(f"{action}: {first}")
    if "operation not permitted" in lowered or "permission denied" in lowered:
        return errors.PermissionDenied(action)
    if "device or resource busy" in lowered:
        return errors.ConflictError(f"{action}: {first} (still in use)")
    return errors.KernelError(action, 22, first)
