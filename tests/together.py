"""Under pytest-xdist, the tests of a module that share one costly module-scoped fixture (a lab, a
browser) run on one worker, one after the other, so that the fixture is built once.

pytest-xdist's ``--dist load`` (``make test``: ``--maxschedchunk 1``) hands each worker one test at
a time from a common queue; a module's tests end up spread over the workers and interleaved with
other modules' tests, and a worker tears a module-scoped fixture down whenever its next test is from
another module: a module lab was built up to five times in one run (several times on one worker).
``TogetherScheduling`` is that scheduler, except that when it hands a worker a test of one of the
listed modules it hands it every test of that module still queued, right after it.
``--dist loadgroup`` would do it too, but it switches the whole run to scope scheduling (each worker
keeps several tests queued, scopes reordered by size), which is not the longest-first order of
tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from xdist.scheduler import LoadScheduling


def module_of(nodeid: str, together: Sequence[str]) -> str | None:
    """The module of ``nodeid`` if its tests go together (one of the ``together`` prefixes)."""
    module = nodeid.split("::", 1)[0]
    return module if nodeid.startswith(tuple(together)) else None


class TogetherScheduling(LoadScheduling):
    """``--dist load``, with the tests of each module of ``together`` sent to one worker at once."""

    def __init__(self, config: pytest.Config, log: object, together: Sequence[str]) -> None:
        super().__init__(config, log)
        self.together = tuple(together)

    def _send_tests(self, node: object, num: int) -> None:
        chunk = self.pending[:num]
        if not chunk:
            return
        assert self.collection is not None
        batch: list[int] = []
        taken = set(chunk)
        for index in chunk:
            batch.append(index)
            module = module_of(self.collection[index], self.together)
            if module is None:
                continue
            siblings = [
                i
                for i in self.pending
                if i not in taken and module_of(self.collection[i], self.together) == module
            ]
            batch += siblings
            taken.update(siblings)
        self.pending[:] = [i for i in self.pending if i not in taken]
        self.node2pending[node].extend(batch)
        node.send_runtest_some(batch)
