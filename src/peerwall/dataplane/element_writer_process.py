"""The element writer's whole program: send each batch it is handed to nf_tables, hand back the
kernel's answers (``dataplane.element_writer``).

Run as ``python -I -S <this file> <channel fd> <netlink fd>`` by ``ElementWriter``, which made
both descriptors: the netlink socket, opened and connected by the agent in its network namespace
(a socket acts on the namespace it was made in, whoever uses it), and one end of a socket pair to
the agent. It imports nothing but ``os`` and ``sys`` (built in: 10-20 ms to start, 8.7 MiB resident, 2.8 MiB of it its own), so that
it is cheap to keep running, and it holds no lock the agent's interpreter waits for: the kernel's
share of an element transaction (it runs inside ``send``, in the sender's thread) runs here, on
the other core, while the agent's loop keeps taking events in.

Frames, both ways, start with a 4-byte length (host order) of what follows. Agent to writer: the
batch (``nft.netlink.element_batch``). Writer to agent: a 4-byte errno (0: sent; else ``send``
failed) and the kernel's answers to the batch, every datagram queued when ``send`` returned (the
kernel runs the whole batch and queues every answer inside ``send``), concatenated; the agent
parses and judges them. The first frame the writer writes, before any batch, is an empty answer:
it is running. The writer ends when the agent closes its end (the agent exited, or
stopped it).
"""

import os
import sys

_RECV = 1 << 16


def _read_exactly(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at its end."""
    parts = []
    while n:
        part = os.read(fd, n)
        if not part:
            return None
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(channel: int, sock: int) -> None:
    # Woken by a batch, the writer must not preempt the agent, which wrote it and goes on taking
    # events in: on a busy machine it would share the agent's core, and the agent would wait
    # for the batch's whole commit inside its write. A batch task (no wake-up preemption) runs
    # when the agent's slice ends, or at once on an idle core, as before.
    try:  # noqa: SIM105 (contextlib is not built in: see the end)
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:  # not allowed here (a seccomp profile): as a normal task
        pass
    os.set_blocking(sock, False)  # answers are read until none is left, never waited for
    order = sys.byteorder
    _write_all(channel, (4).to_bytes(4, order) + bytes(4))  # ready: an empty answer
    while True:
        head = _read_exactly(channel, 4)
        if head is None:
            return
        batch = _read_exactly(channel, int.from_bytes(head, order))
        if batch is None:
            return
        answers = []
        try:
            os.write(sock, batch)  # the kernel commits (or refuses) the whole batch in here
            code = 0
        except OSError as e:
            code = e.errno or -1
        if code == 0:
            while True:
                try:
                    answers.append(os.read(sock, _RECV))
                except BlockingIOError:
                    break
                except OSError as e:  # ENOBUFS: answers were lost
                    code = e.errno or -1
                    break
        body = code.to_bytes(4, order, signed=True) + b"".join(answers)
        _write_all(channel, len(body).to_bytes(4, order) + body)


if __name__ == "__main__":
    # Not contextlib.suppress: contextlib is not built in, and this program imports nothing else.
    try:  # noqa: SIM105
        serve(int(sys.argv[1]), int(sys.argv[2]))
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        pass
