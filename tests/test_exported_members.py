"""The public API is what ``__all__`` says, and every name in it exists."""

import peerwall


def test_all_names_exist_and_are_public() -> None:
    for name in peerwall.__all__:
        assert hasattr(peerwall, name), name
        assert not name.startswith("_")
    assert sorted(peerwall.__all__) == peerwall.__all__


def test_nothing_public_is_missing_from_all() -> None:
    public = {
        n
        for n, v in vars(peerwall).items()
        if not n.startswith("_") and not isinstance(v, type(peerwall))
    }
    assert public == set(peerwall.__all__)
