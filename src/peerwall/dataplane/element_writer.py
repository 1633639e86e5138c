"""A process of its own that sends element batches to nf_tables, so that the kernel's share of
an element transaction does not run in the agent's thread.

The kernel commits a netlink batch inside ``send``, in the sender's thread: ~0.7-1.2 us an
element, 13-14 ms of the churn benchmark's 10,000 events (bench/churn_bench.py), all of it on the
agent's event loop, which meanwhile takes no events in. A worker thread does not move it off the
loop: the thread needs the interpreter lock before and after ``send``, and the busy loop, which
releases and retakes the lock at every turn, keeps it from getting it until the events stop
(``agent.run.INLINE_ELEMENTS``). A process has its own interpreter: the agent encodes the batch
(``nft.netlink.element_batch``, ~0.03 us an element), writes it to the writer
(``element_writer_process``, a few dozen lines that import only ``os`` and ``sys``) and goes on
taking events; the writer sends it on a netlink socket the agent opened (in the agent's network
namespace, with the agent's privileges: the writer needs none of its own) and writes the kernel's
answers back; the agent judges them (``judge``, the same as for its own socket) when its loop
finds the channel readable.

The writer is started once, with the agent, and ends when the agent closes its end of the
channel (or exits: the kernel closes it). If it dies, the agent finds the channel at its end
(``WriterGone``) and commits in its own process from then on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peerwall.dataplane.netlink import NetlinkSets, judge
from peerwall.errors import NftError
from peerwall.nft import netlink
from peerwall.nft.netlink import SetEdit

PROGRAM = str(Path(__file__).with_name("element_writer_process.py"))
_ORDER = sys.byteorder


class WriterGone(Exception):
    """The writer process ended (or its channel failed): what it was sending may or may not
    have reached the kernel."""


@dataclass(slots=True)
class Ticket:
    """A batch handed to the writer: what judging its answer needs."""

    family: str
    table: str
    edits: Sequence[SetEdit]
    first: int
    last: int
    sent: list[netlink.Sent]


class ElementWriter:
    """The writer process and the agent's end of its channel, for network namespace ``netns``
    (``None``: the current one). Once ``ready``, one batch at a time: ``submit``, then ``answer``
    once ``fileno()`` is readable (the caller's event loop watches it), then ``judge``."""

    def __init__(self, netns: str | None = None) -> None:
        self._sets = NetlinkSets(netns)  # the socket the writer sends on; kept for its options
        ours, theirs = socket.socketpair()
        try:
            nl = self._sets.fileno()
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", PROGRAM, str(theirs.fileno()), str(nl)],
                pass_fds=(theirs.fileno(), nl),
                stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            ours.close()
            self._sets.close()
            raise NftError(f"cannot start the element writer: {e}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours
        self._seq = 0
        self._got = bytearray()
        self.ready = False
        """Whether the writer is running (its first frame came): until then, batches are
        committed in the agent's process (starting an interpreter takes 10-50 ms)."""
        self.batches = 0
        """Batches answered (for tests and the benchmark)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def fileno(self) -> int:
        """The agent's end of the channel: readable when an answer (or the writer's end) came."""
        return self._channel.fileno()

    def submit(self, family: str, table: str, edits: Sequence[SetEdit]) -> Ticket | None:
        """Encode ``edits`` as one batch and hand it to the writer; None if there is nothing to
        send. Raises ``WriterGone`` if the channel is closed."""
        first = self._seq + 1
        batch, sent = netlink.element_batch(family, table, edits, first)
        if not sent:
            return None
        last = sent[-1].seq
        self._seq = last + 1
        self._sets.room(len(batch))
        frame = len(batch).to_bytes(4, _ORDER) + batch
        try:
            # A frame bigger than the channel's buffer (a step of thousands of elements) is
            # written as the writer reads it: blocking, briefly.
            self._channel.setblocking(True)
            try:
                self._channel.sendall(frame)
            finally:
                self._channel.setblocking(False)
        except OSError as e:
            raise WriterGone(f"the element writer's channel failed: {e}") from None
        return Ticket(family, table, edits, first, last, sent)

    def answer(self) -> tuple[int, bytes] | None:
        """The writer's answer (errno of ``send``, the kernel's answers), once it has all come;
        None until then. Raises ``WriterGone`` at the channel's end."""
        try:
            while True:
                part = self._channel.recv(1 << 16)
                if not part:
                    raise WriterGone(f"the element writer (pid {self.pid}) ended")
                self._got += part
        except BlockingIOError:
            pass
        except OSError as e:
            raise WriterGone(f"the element writer's channel failed: {e}") from None
        got = self._got
        if len(got) < 8:
            return None
        size = int.from_bytes(got[:4], _ORDER)
        if len(got) < 4 + size:
            return None
        code = int.from_bytes(got[4:8], _ORDER, signed=True)
        data = bytes(got[8 : 4 + size])
        del got[: 4 + size]
        if not self.ready:  # the first frame: the writer is running
            self.ready = True
            return self.answer()
        self.batches += 1
        return code, data

    def judge(self, ticket: Ticket, answer: tuple[int, bytes]) -> None:
        """Raise ``NftError`` if the kernel refused the batch (or did not answer it), as
        ``NetlinkSets.edit`` does for a batch it sends itself."""
        code, data = answer
        if code:
            raise NftError(f"nf_tables netlink: {os.strerror(code)}")
        errors = netlink.errors_in(data, ticket.first, ticket.last)
        judge(ticket.family, ticket.table, ticket.edits, ticket.first, ticket.sent, errors)

    def close(self, kill: bool = False) -> None:
        """Close the channel (the writer ends at once) and wait for the writer; ``kill``: kill
        it first (it does not answer)."""
        self._channel.close()
        if kill and self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._sets.close()
