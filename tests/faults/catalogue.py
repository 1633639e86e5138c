"""The 60 faults of issue 18's first trial, as far as the issue's text names them, each with the
fault suite's case that drives it now (``row``: the start of the fault's name in a run's
records) or why none does. docs/RELIABILITY.md lists them with the outcome of the run."""

from __future__ import annotations

from typing import NamedTuple


class Fault(NamedTuple):
    number: int
    fault: str
    trial: str
    """What the first trial found: held, operator (safe, but an operator had to act), failed."""
    row: str | None
    """The start of the run's record name(s) for this fault; None: not driven by tests/faults."""
    note: str = ""


_HELD = "held"
_OP = "operator"
_FAILED = "failed"
_EDIT = "table edit: "

CATALOGUE: list[Fault] = [
    # Held in the first trial (the first paragraph).
    Fault(1, "agent SIGKILL (idle)", _HELD, "agent killed (idle) (SIGKILL)"),
    Fault(2, "agent SIGTERM", _HELD, "agent killed (idle) (SIGTERM)"),
    Fault(3, "agent killed by the OOM killer", _HELD, "agent killed by the kernel's OOM killer"),
    Fault(4, "agent crash (SIGSEGV)", _HELD, "agent killed (idle) (crash)"),
    Fault(
        5,
        "a transaction refused by the kernel (whole replace)",
        _HELD,
        "a transaction refused by the kernel",
        "real kernel: a narrowing mode step that also deletes an address a hand edit deleted "
        "first is refused (ENOENT); the edit is sent through the agent's own notification "
        "socket (pidfd_getfd), so the agent takes nftables' notification of it for its own (it "
        "tells its commits by the committing socket's port id) and no repair comes first "
        "(resync 1 h); an edit the agent does see is repaired on the notification and races "
        "the step",
    ),
    Fault(6, "mode switch, widening", _HELD, "mode switch"),
    Fault(7, "mode switch, narrowing", _HELD, "mode switch"),
    Fault(8, "table deleted", _HELD, _EDIT + "table deleted"),
    Fault(9, "table flushed", _HELD, _EDIT + "table flushed"),
    Fault(10, "base chain flushed", _HELD, _EDIT + "base chain flushed"),
    Fault(11, "base chain deleted", _HELD, _EDIT + "base chain deleted"),
    Fault(12, "base chain policy flipped", _HELD, _EDIT + "base chain policy flipped"),
    Fault(13, "rule deleted", _HELD, _EDIT + "rule deleted"),
    Fault(14, "rule replaced by accept", _HELD, _EDIT + "rule replaced by accept"),
    Fault(15, "accept rule inserted first", _HELD, _EDIT + "accept rule inserted first"),
    Fault(16, "set element deleted", _HELD, _EDIT + "set element deleted"),
    Fault(17, "set element added", _HELD, _EDIT + "set element added"),
    Fault(18, "set flushed", _HELD, _EDIT + "set flushed"),
    Fault(19, "intruder base chain at a higher priority", _HELD, _EDIT + "intruder chain"),
    Fault(20, "full conntrack table", _HELD, "the gateway's conntrack table full"),
    Fault(21, "API server down", _HELD, "Kubernetes API fault during a narrowing change (outage)"),
    Fault(22, "API answers 500", _HELD, "Kubernetes API fault during a narrowing change (500)"),
    Fault(23, "API answers 429", _HELD, "Kubernetes API fault during a narrowing change (429)"),
    Fault(
        24,
        "watch expired (410 Gone)",
        _HELD,
        "Kubernetes API fault during a narrowing change (410)",
    ),
    Fault(
        25,
        "watch streams dropped mid-line",
        _HELD,
        "Kubernetes API fault during a narrowing change (dropped-streams)",
    ),
    Fault(26, "soak (events and probes)", _HELD, "soak"),
    # Items 1-6 of the issue (5 needed an operator, 16 failed).
    Fault(27, "agent SIGKILLed during a narrowing change", _OP, "SIGKILL of the agent right after"),
    Fault(
        28,
        "agent SIGKILLed during `lab apply`",
        _OP,
        "SIGKILL of the agent right after",
        "the same input written as `lab apply` writes it (agents.write_inputs)",
    ),
    Fault(29, "agent stopped (SIGSTOP) during a change", _FAILED, "SIGSTOP of the agent"),
    Fault(30, "table made dormant", _FAILED, "`nft add table inet peerwall { flags dormant; }`"),
    Fault(31, "table held by another process (`flags owner`)", _FAILED, "an intruder holds"),
    Fault(32, "agent restarted while the table is held", _FAILED, "an intruder holds"),
    Fault(
        33,
        "full conntrack table, agent at 128 MiB",
        _FAILED,
        "the gateway's conntrack table full",
        "the same agent process throughout, its peak RSS under 128 MiB asserted; with 150,000 "
        "entries of the narrowed peers: 'a large conntrack table in a real agent's gateway'; "
        "262,143 doomed entries: bench/conntrack_bench.py",
    ),
    Fault(
        34,
        "full conntrack table, agent at the chart's 256 MiB",
        _FAILED,
        "the gateway's conntrack table full",
        "under 128 MiB asserted, so under 256 MiB",
    ),
    Fault(
        35,
        "full conntrack table, mode change time",
        _FAILED,
        "the gateway's conntrack table full",
        "recovery: the narrowing change reported with the table full",
    ),
    Fault(36, "no file descriptor left (EMFILE)", _FAILED, "no file descriptor left"),
    Fault(37, "full state disk (ENOSPC)", _FAILED, "a full disk under"),
    Fault(
        38, 'watch event object `"oops"`', _FAILED, "a malformed Kubernetes watch event (string)"
    ),
    Fault(39, "watch event object `null`", _FAILED, "a malformed Kubernetes watch event (null)"),
    Fault(
        40,
        "watch event object without a name",
        _FAILED,
        "a malformed Kubernetes watch event (no-name)",
    ),
    Fault(
        41,
        "ERROR watch event with a string",
        _FAILED,
        "a malformed Kubernetes watch event (error-string)",
    ),
    Fault(42, "list answer `[]`", _FAILED, "a malformed Kubernetes list answer (list)"),
    Fault(
        43,
        'list answer `{"items":[null]}`',
        _FAILED,
        "a malformed Kubernetes list answer (null-item)",
    ),
    Fault(
        44,
        'list answer `{"metadata":[],"items":[]}`',
        _FAILED,
        "a malformed Kubernetes list answer (metadata-list)",
    ),
    Fault(
        52,
        "list answer without a resourceVersion",
        _FAILED,
        "a malformed Kubernetes list answer (no-version)",
    ),
    Fault(
        45,
        "API server restarted with lower versions (504 TooLarge)",
        _FAILED,
        "an API server restarted with a new history (504",
    ),
    Fault(
        46,
        "API server restarted reusing versions",
        _FAILED,
        "an API server restarted with a new history that reuses",
    ),
    Fault(47, "hanging watch", _FAILED, "a hung watch"),
    Fault(
        48, "source blind time not exported", _FAILED, "an API server refusing every request (500)"
    ),
    Fault(
        49, "agent PID file deleted (status, apply, down)", _FAILED, "an agent's PID file deleted"
    ),
    Fault(50, "SIGTERM during `lab up`", _FAILED, "SIGTERM during `lab up`"),
    Fault(51, "corrupt lab copy of the topology", _OP, "a corrupt lab copy"),
]
"""52 rows for the 60: the issue names kinds, not every variant it tried. The remaining 9 (the trial's
repetitions: the 14 kills counted once, the 5-minute soaks run more than once, variants of the
same edit) cannot be told apart from its text."""
