"""A folder of files that changes all at once, as kubelet updates a ConfigMap's volume.

An agent reads several inputs (topology, values, the peer gateways' addresses); written one
after another, even each one atomically, a reader polling between two writes sees a set that
was never meant: a new topology with the old mode, say, which it would enforce (and report under
a digest nobody waits for). Kubelet's ``AtomicWriter`` (kubernetes/kubernetes
``pkg/volume/util/atomic_writer.go``, at 00e11024) never lets that happen, and this is its
layout:

    <folder>/..2026_12_07_17_00_00.a1b2c3/   the files of one version
    <folder>/..data -> ..2026_12_07_17_00_00.a1b2c3
    <folder>/topology.yaml -> ..data/topology.yaml   (what readers open)

A new version is written into a new hidden folder, then one ``rename`` of a ``..data_tmp``
symlink over ``..data`` switches every file at once; the old version is removed after. A reader
that opens the files one by one can still straddle the switch; the agent's file source checks
that no file was replaced while it read them (``agent.filesource``), which makes its read one
version's whole, whether kubelet or the lab wrote the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

from peerwall.lab.state import make_folder, write_file

DATA = "..data"
"""The symlink to the current version's folder (kubelet's name)."""
_NEW_DATA = "..data_tmp"


def publish(folder: str, files: dict[str, str]) -> None:
    """Make ``files`` (name -> text) the contents of ``folder``, all at once. Names are plain
    file names not starting with ``..`` (those are the folder's own). Names of the last version
    not in ``files`` disappear. One writer at a time (the lab's lock)."""
    for name in files:
        if os.sep in name or name.startswith("..") or not name:
            raise ValueError(f"{name!r}: not a plain file name for {folder}")
    make_folder(folder)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    version = tempfile.mkdtemp(dir=folder, prefix=stamp)
    try:
        os.chmod(version, 0o755)
        for name, text in files.items():
            write_file(os.path.join(version, name), text)
        for name in files:
            _link(os.path.join(DATA, name), os.path.join(folder, name))
        new = os.path.join(folder, _NEW_DATA)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(new)  # left by a writer that died before its switch
        os.symlink(os.path.basename(version), new)
        os.replace(new, os.path.join(folder, DATA))  # the switch: one rename
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    for entry in os.scandir(folder):
        if entry.name in (DATA, os.path.basename(version)) or entry.name in files:
            continue
        if entry.name.startswith("..") and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)  # an older version
        elif entry.is_symlink():
            os.unlink(entry.path)  # a name the new version no longer has


def _link(target: str, path: str) -> None:
    """``path`` a symlink to ``target``: kept if it is one already, else made (atomically)."""
    with contextlib.suppress(OSError):
        if os.readlink(path) == target:
            return
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
