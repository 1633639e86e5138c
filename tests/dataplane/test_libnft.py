"""LibNft on a real kernel: namespace binding, atomicity, output modes."""

from __future__ import annotations

import ctypes
import resource
import secrets
import subprocess
import sys
import threading

import pytest
from nftlab import nft_in, seed_table, sh

from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.dataplane import nft as nft_module
from peerwall.dataplane.nft import LibNft
from peerwall.errors import LabError, NftError
from peerwall.nft.objects import render_replace

pytestmark = pytest.mark.lab


def root_tables() -> str:
    return sh("nft", "list", "tables")


def test_runs_in_its_namespace_and_not_in_the_root_one(netns: str) -> None:
    table = f"pwtest_{secrets.token_hex(4)}"
    before = root_tables()
    assert table not in before
    with LibNft(netns) as nft:
        nft.run(f"add table inet {table}\nadd chain inet {table} c\n")
    assert f"table inet {table}" in nft_in(netns, "list", "tables")
    after = root_tables()
    assert table not in after
    assert after == before


def test_peerwall_table_never_reaches_the_root_namespace(nft: LibNft, netns: str) -> None:
    example = seed_table()
    had_peerwall = "table inet peerwall" in root_tables()
    nft.run(render_replace(example))
    assert "table inet peerwall" in nft_in(netns, "list", "tables")
    assert ("table inet peerwall" in root_tables()) == had_peerwall


def test_context_stays_bound_when_used_from_another_thread(nft: LibNft, netns: str) -> None:
    # The netlink socket is opened at creation: a thread that never entered the namespace still
    # acts on it.
    errors: list[BaseException] = []

    def work() -> None:
        try:
            nft.run("add table inet pwthread\n")
        except BaseException as e:  # reported to the main thread below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors
    assert "table inet pwthread" in nft_in(netns, "list", "tables")
    assert "pwthread" not in root_tables()


def test_bad_script_raises_with_the_error_text_and_changes_nothing(nft: LibNft, netns: str) -> None:
    nft.run(render_replace(seed_table()))
    before = nft_in(netns, "-s", "list", "ruleset")
    # The first lines are valid; the last one is not, so nothing of the buffer may be applied.
    bad = (
        f"add element inet peerwall {names.peer_set('C2', SetKind.BACKENDS)} {{ 10.244.9.9 }}\n"
        f"flush chain inet peerwall {names.peer_chain('C2')}\n"
        "add rule inet peerwall no-such-chain accept\n"
    )
    with pytest.raises(NftError) as info:
        nft.run(bad)
    message = str(info.value)
    # The location names the offending line of the script, and quotes that line.
    assert "script:3:24-36: Error: Could not process rule: No such file or directory" in message
    assert "add rule inet peerwall no-such-chain accept" in message
    assert nft_in(netns, "-s", "list", "ruleset") == before


def test_syntax_error_names_its_line(nft: LibNft) -> None:
    with pytest.raises(NftError, match=r"script:2:11-14: Error: syntax error"):
        nft.run("add table inet x\nadd tabel inet x\n")


def test_list_json_and_list_text_switch_output_modes(nft: LibNft) -> None:
    nft.run(render_replace(seed_table()))
    doc = nft.list_json("list table inet peerwall")
    kinds = {next(iter(o)) for o in doc["nftables"]}
    assert {"metainfo", "table", "set", "chain", "rule"} <= kinds
    text = nft.list_text("list table inet peerwall")
    assert text.startswith("table inet peerwall {")
    # Stateless: counters print without their values.
    assert "\t\tcounter drop\n" in text
    assert "counter packets" not in text
    # A script run after a JSON listing is still read as nft syntax, and a listing after a
    # script returns text again.
    backends = names.peer_set("C2", SetKind.BACKENDS)
    nft.run(f"add element inet peerwall {backends} {{ 10.244.0.9 }}\n")
    assert "10.244.0.9" in nft.list_text(f"list set inet peerwall {backends}")
    assert nft.list_json("list tables")["nftables"][0]["metainfo"]


def test_list_of_a_missing_table_raises(nft: LibNft) -> None:
    with pytest.raises(NftError, match="No such file or directory"):
        nft.list_text("list table inet absent")


def test_closed_context_refuses_calls(netns: str) -> None:
    nft = LibNft(netns)
    nft.close()
    nft.close()  # twice is fine
    with pytest.raises(NftError, match="closed"):
        nft.run("add table inet x\n")


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft_module, "LIBRARY", "libnftables-absent.so.9")
    with pytest.raises(NftError, match=r"not found: apt-get install libnftables1"):
        LibNft()


def test_missing_namespace_is_an_error() -> None:
    with pytest.raises(LabError, match="does not exist"):
        LibNft(f"pw-t-absent-{secrets.token_hex(4)}")


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2.split(" ")]


def _malloc_in_use() -> int:
    """Bytes the C heap has handed out and not had back (glibc's ``mallinfo2``), all threads."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _big_table(nft: LibNft, n: int) -> None:
    addresses = ",\n".join(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n))
    nft.run(
        "table inet pwbig {\n set s {\n type ipv4_addr\n"
        f" elements = {{ {addresses} }}\n }}\n chain c {{\n ip saddr @s accept\n }}\n}}\n"
    )


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc >= 2.33")
@pytest.mark.parametrize(
    "command", ["list table inet pwbig", "list chain inet pwbig c", "list tables", None]
)
def test_no_cache_of_the_table_is_kept_after_a_listing_or_a_script(
    nft: LibNft, command: str | None
) -> None:
    # libnftables caches the whole table, elements included, for nearly any listing and for a
    # table script, and keeps it in the context until a later command needs another: 50,000
    # elements are ~17 MiB of C heap held for good (issue 21). None: the script alone.
    before = _malloc_in_use()
    _big_table(nft, 50_000)
    if command is not None:
        listed = nft.list_json(command) if "chain" in command else nft.list_text(command)
        assert listed
        del listed
    assert _malloc_in_use() - before < 4 << 20
    # The context still acts on its namespace and reads the kernel's table.
    nft.run("add element inet pwbig s { 11.0.0.1 }\n")
    assert "11.0.0.1" in nft.list_text("list set inet pwbig s")


def test_after_a_listing_the_context_still_acts_in_its_namespace(nft: LibNft, netns: str) -> None:
    nft.list_json("list tables")  # a listing: the cache is dropped after it
    nft.run("add table inet pwafterlist\nadd chain inet pwafterlist c\n")
    assert "table inet pwafterlist" in nft_in(netns, "list", "tables")
    assert "pwafterlist" not in root_tables()


NO_DESCRIPTOR_LEFT = """
import os
from peerwall.dataplane.nft import LibNft
nft = LibNft()  # in the namespace already, as the agent: no namespace file to open
nft.run("add table inet pwfds\\nadd chain inet pwfds c\\n")
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print(len(nft.list_json("list table inet pwfds")["nftables"]), flush=True)
nft.run("add chain inet pwfds d\\nadd chain inet pwfds e\\n")
print("ok", flush=True)
"""


def test_a_listing_with_no_descriptor_left_does_not_end_the_process(netns: str) -> None:
    # Dropping the cache must not open anything: libnftables exits the process when it cannot
    # open a netlink socket (a new context would), and an agent out of descriptors must go on
    # enforcing (tests/faults/test_side_files.py).
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", NO_DESCRIPTOR_LEFT],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "ok"]  # metainfo, table, chain
