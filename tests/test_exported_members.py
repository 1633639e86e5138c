"""The public API is what ``__all__`` says, and every name in it exists."""

import peerwall


def test_all_names_exist_and_are_public() -> None:
    for name in peerwall.__all__:
        assert hasattr(peerwall, name), name
        assert not name.startswith("_")
    assert sorted(peerwall.__all__) == peerwall.__all__


def test_nothing_public_is_missing_from_all() -> None:
    # dir(): the names defined and the names loaded on first use (PEP 562) alike.
    public = {
        n
        for n in dir(peerwall)
        if not n.startswith("_") and not isinstance(getattr(peerwall, n), type(peerwall))
    }
    assert public == set(peerwall.__all__)


def test_importing_a_module_of_peerwall_loads_no_more_of_it() -> None:
    """The public names load on first use: ``import peerwall.errors`` (and so the CLI's
    ``--help``) does not import the core."""
    import subprocess
    import sys

    code = "import sys, peerwall.errors; print(sorted(m for m in sys.modules if m.startswith('peerwall')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['peerwall', 'peerwall.errors']"


def test_no_lazily_exported_name_is_also_a_submodule() -> None:
    """A package that exports names lazily (PEP 562) must not have a submodule of the same name:
    once anything imports that submodule, the import system binds the name to the module, and
    ``from package import name`` gives the module instead of the function (``policy.expect`` did,
    until its module became ``policy.expected``)."""
    import importlib
    import pkgutil

    for package in (
        "peerwall",
        "peerwall.model",
        "peerwall.policy",
        "peerwall.agent.kube",
        "peerwall.dataplane",
    ):
        module = importlib.import_module(package)
        exported = set(vars(module)["_EXPORTS"])
        submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}
        assert not exported & submodules, f"{package}: {sorted(exported & submodules)}"
