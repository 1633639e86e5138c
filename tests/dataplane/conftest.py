"""Fixtures for the dataplane tests; ``netns`` and ``nft`` come from the suite's conftest."""

from __future__ import annotations

import pytest
from nftlab import example_ruleset

from peerwall.compile.ruleset import Ruleset


@pytest.fixture
def example() -> Ruleset:
    return example_ruleset()
