"""The ``Nft`` protocol, and its libnftables backend.

``LibNft`` is a thin ctypes binding of libnftables' C API: one script is one atomic kernel
transaction, with no ``nft`` process per operation (a process costs 2-17 ms). Element edits (the
agent's pod and endpoint events) skip libnftables, which re-fetches the ruleset several times per
commit (~0.2 ms an event): they go to the kernel as one netlink batch (``dataplane.netlink``,
~0.008 ms).
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Protocol

from peerwall import nsenter
from peerwall.dataplane.netlink import NetlinkSets
from peerwall.dataplane.setdump import SetDumps
from peerwall.errors import FlaggedTable, NftError
from peerwall.nft.netlink import SetEdit, table_flag_names
from peerwall.nft.transaction import Transaction

LIBRARY = "libnftables.so.1"

# Output flags from <nftables/libnftables.h>.
OUTPUT_STATELESS = 1 << 2
OUTPUT_JSON = 1 << 4
OUTPUT_TERSE = 1 << 11

_NFT_CTX_DEFAULT = 0


class Nft(Protocol):
    """What the dataplane needs from nftables, bound to one network namespace."""

    def run(self, script: str) -> None:
        """Run ``script`` as one atomic transaction; raise ``NftError`` if anything is refused."""
        ...

    def apply(self, tx: Transaction) -> None:
        """Apply a transaction's operations atomically; raise ``NftError`` (changing nothing)
        if anything is refused."""
        ...

    def list_json(self, command: str) -> dict[str, Any]:
        """Run a ``list ...`` command and return its JSON output."""
        ...

    def edit_elements(self, family: str, table: str, edits: Sequence[SetEdit]) -> None:
        """Delete and add addresses in plain address sets, in one transaction; raise
        ``NftError`` (changing nothing) if any set is missing or any deleted address absent."""
        ...

    def list_json_terse(self, command: str) -> dict[str, Any]:
        """``list_json`` without set and map elements."""
        ...

    def set_addresses(self, family: str, table: str, name: str) -> Sequence[int] | None:
        """A plain address set's addresses as ints; None if an element is not one address."""
        ...

    def generation(self) -> int:
        """The ruleset's generation: every committed transaction bumps it."""
        ...

    def table_flags(self, family: str | None = None) -> dict[tuple[str, str], tuple[str, ...]]:
        """Every table of ``family`` (``None``: of every family) and its flags."""
        ...


@cache
def _load(name: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise NftError(f"{name} not found: apt-get install libnftables1") from None
    ctx, text = ctypes.c_void_p, ctypes.c_char_p
    for fn, args, res in (
        ("nft_ctx_new", [ctypes.c_uint32], ctx),
        ("nft_ctx_free", [ctx], None),
        ("nft_ctx_buffer_output", [ctx], ctypes.c_int),
        ("nft_ctx_buffer_error", [ctx], ctypes.c_int),
        ("nft_ctx_unbuffer_output", [ctx], ctypes.c_int),
        ("nft_ctx_unbuffer_error", [ctx], ctypes.c_int),
        ("nft_ctx_output_get_flags", [ctx], ctypes.c_uint),
        ("nft_ctx_output_set_flags", [ctx, ctypes.c_uint], None),
        ("nft_run_cmd_from_buffer", [ctx, text], ctypes.c_int),
        ("nft_run_cmd_from_filename", [ctx, text], ctypes.c_int),
        # c_char_p copies the text out at once: the library reuses these buffers.
        ("nft_ctx_get_output_buffer", [ctx], text),
        ("nft_ctx_get_error_buffer", [ctx], text),
    ):
        f = getattr(lib, fn)
        f.argtypes = args
        f.restype = res
    return lib


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``). A whole-table write
    or a read-back of 200,000 elements allocates ~100 MiB in libnftables and Python, all freed
    at the end, but glibc keeps freed pages in its arenas (one per thread that allocated, and
    these run in worker threads): without this, the agent's resident size keeps the peak of
    its biggest transaction. A few milliseconds; called after whole-table work only."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class LibNft:
    """A libnftables context bound to network namespace ``netns`` (``None``: the current one).

    The context keeps the netlink socket it opened at creation, so it acts on that namespace from
    whatever thread later uses it. Calls are serialized: a context is not thread-safe. A missing
    namespace raises ``LabError``.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._lib = _load(LIBRARY)
        with nsenter.entered(netns):
            ctx = self._lib.nft_ctx_new(_NFT_CTX_DEFAULT)
            if not ctx:
                raise NftError(f"nft_ctx_new failed in namespace {netns or '(current)'}")
            # Made here, in the same namespace as the context; it stays there for life.
            try:
                self._sets = NetlinkSets()
            except NftError:
                self._lib.nft_ctx_free(ctx)
                raise
            try:
                self._dumps = SetDumps()
            except NftError:
                self._sets.close()
                self._lib.nft_ctx_free(ctx)
                raise
        self._ctx: int | None = ctx
        self._free = weakref.finalize(self, self._lib.nft_ctx_free, ctx)
        # Unbuffered, libnftables would print to our stdout/stderr instead of returning text.
        if self._lib.nft_ctx_buffer_output(ctx) != 0 or self._lib.nft_ctx_buffer_error(ctx) != 0:
            self.close()
            raise NftError("libnftables could not buffer its output")
        flags = self._lib.nft_ctx_output_get_flags(ctx)
        self._base_flags = flags & ~(OUTPUT_JSON | OUTPUT_STATELESS)
        self._lock = threading.Lock()

    def _drop_cache(self, ctx: int) -> None:
        """Free libnftables' cache and output buffer (the lock held). libnftables keeps the
        objects of its last command in the context until a later command needs others, and
        nearly every listing (``list table``, ``list chain``, even ``list tables``) and every
        table script caches the whole table with its elements: ~75-80 MiB at 220,000 elements
        (libnftables 1.0.6, measured), kept for good after a read-back or a whole-table write
        (issue 21: memory per enforced address). Its API has no call to drop the cache, but a
        listing drops it and fetches only what that listing shows: ``list flowtables`` (peerwall
        has none), a few hundred bytes. Not a new context: ``nft_ctx_new`` exits the process
        when it cannot open its netlink socket (no descriptor left). The output buffer, grown
        to the largest listing (~16 MiB), is freed by unbuffering and buffering again."""
        self._lib.nft_ctx_output_set_flags(ctx, self._base_flags)
        self._lib.nft_run_cmd_from_buffer(ctx, b"list flowtables")
        # Unbuffering frees the buffers (nothing of this listing is read); buffered again at
        # once, as made in __init__.
        self._lib.nft_ctx_unbuffer_output(ctx)
        self._lib.nft_ctx_unbuffer_error(ctx)
        if self._lib.nft_ctx_buffer_output(ctx) != 0 or self._lib.nft_ctx_buffer_error(ctx) != 0:
            raise NftError("libnftables could not buffer its output")

    def close(self) -> None:
        """Free the context; further calls raise ``NftError``. Safe to call twice."""
        self._ctx = None
        self._free()
        self._sets.close()
        self._dumps.close()

    def __enter__(self) -> LibNft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ctx is None else "open"
        return f"LibNft(netns={self.netns!r}, {state})"

    def run(self, script: str) -> None:
        # Run from an in-memory file, not a buffer: for buffer input libnftables 1.0.6 prints no
        # line number and quotes the buffer's first line whichever line is wrong, which is useless
        # in a script of a thousand lines. A one-command script (a pod event) goes through the
        # buffer: its error quotes the only line there is, and the memfd would be 15-25% of it.
        if script.count("\n") <= 1:
            self._command(script, 0, drop=False)
            return
        try:
            fd = os.memfd_create("peerwall-nft", os.MFD_CLOEXEC)
        except OSError:
            # No descriptor left (EMFILE): the buffer needs none; only its errors say less.
            self._command(script, 0, drop=True)
            return
        try:
            data = memoryview(script.encode())
            while data:
                data = data[os.write(fd, data) :]
            path = f"/proc/self/fd/{fd}"
            try:
                self._call(
                    0, lambda ctx: self._lib.nft_run_cmd_from_filename(ctx, path.encode()), True
                )
            except NftError as e:
                raise NftError(str(e).replace(path, "script")) from None
        finally:
            os.close(fd)

    def apply(self, tx: Transaction) -> None:
        """libnftables takes text: the transaction's script, rendered by ``nft.transaction``."""
        if not tx.empty:
            self.run(tx.script)

    def list_json(self, command: str) -> dict[str, Any]:
        self._refuse_flagged(command)
        return self._parse(command, self._command(command, OUTPUT_JSON, drop=True))

    def table_flags(self, family: str | None = None) -> dict[tuple[str, str], tuple[str, ...]]:
        """Every table of ``family`` (``None``: every family) and its flags, over netlink."""
        if self._ctx is None:
            raise NftError("libnftables context is closed")
        return {k: table_flag_names(v) for k, v in self._dumps.tables(family).items()}

    def _refuse_flagged(self, command: str) -> None:
        """Raise ``FlaggedTable`` before libnftables prints a table with flags as JSON (a
        use-after-free in 1.0.6: the agent crashed with "corrupted double-linked list" reading
        back a table another process held with ``flags owner``). Only ``list ruleset``,
        ``list tables`` and ``list table`` print table objects (checked on 1.0.6: ``list
        chain``, ``list set``, ``list chains``, ``list sets`` do not)."""
        words = command.split()
        if (
            words[:1] != ["list"]
            or len(words) < 2
            or words[1] not in ("ruleset", "tables", "table")
        ):
            return
        if words[1] == "table":
            family = words[2] if len(words) > 3 else "ip"
            shown = {(family, words[-1])}
            found = self.table_flags(family)
        else:
            found = self.table_flags(words[2] if len(words) > 2 else None)
            shown = set(found)
        flagged = {k: v for k, v in found.items() if v and k in shown}
        if flagged:
            raise FlaggedTable(flagged)

    @staticmethod
    def _parse(command: str, out: str) -> dict[str, Any]:
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as e:
            raise NftError(f"libnftables returned invalid JSON for {command!r}: {e}") from None
        if not isinstance(doc, dict):
            raise NftError(f"libnftables returned unexpected JSON for {command!r}")
        return doc

    def edit_elements(self, family: str, table: str, edits: Sequence[SetEdit]) -> None:
        if self._ctx is None:
            raise NftError("libnftables context is closed")
        self._sets.edit(family, table, edits)

    def list_json_terse(self, command: str) -> dict[str, Any]:
        """``list_json`` with libnftables' terse output: no set or map elements. For ``list
        ruleset`` (and ``list sets``, ``list maps``) libnftables then fetches no elements either
        (~1 MiB at 220,000 elements against ~140 MiB, 1.0.6, measured); ``list table`` and
        ``list chain`` fetch them all the same."""
        self._refuse_flagged(command)
        return self._parse(command, self._command(command, OUTPUT_JSON | OUTPUT_TERSE, drop=True))

    def set_addresses(self, family: str, table: str, name: str) -> Sequence[int] | None:
        """The addresses of a plain address set over netlink, without libnftables
        (``dataplane.setdump``); None if an element is not an address."""
        if self._ctx is None:
            raise NftError("libnftables context is closed")
        return self._dumps.addresses(family, table, name)

    def generation(self) -> int:
        """The ruleset's generation (each committed transaction bumps it)."""
        if self._ctx is None:
            raise NftError("libnftables context is closed")
        return self._dumps.generation()

    def list_text(self, command: str) -> str:
        return self._command(command, OUTPUT_STATELESS, drop=True)

    def _command(self, command: str, flags: int, drop: bool) -> str:
        return self._call(
            flags, lambda ctx: self._lib.nft_run_cmd_from_buffer(ctx, command.encode()), drop
        )

    def _call(self, flags: int, call: Callable[[int], int], drop: bool) -> str:
        """Run ``call(ctx)`` with output ``flags``; return the output, or raise the error text.
        ``drop``: then free libnftables' cache (``_drop_cache``), before the caller parses the
        output, so that the two are never held at once."""
        with self._lock:
            ctx = self._ctx
            if ctx is None:
                raise NftError("libnftables context is closed")
            # Set the flags on every call: with JSON output on, libnftables would also try to
            # parse an input script as JSON first.
            self._lib.nft_ctx_output_set_flags(ctx, self._base_flags | flags)
            rc = call(ctx)
            # Read both buffers every time: reading is what rewinds them for the next command.
            out = (self._lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            if drop:
                self._drop_cache(ctx)
        if rc != 0:
            raise NftError(err.strip() or f"libnftables failed (rc={rc}) without a message")
        return out
