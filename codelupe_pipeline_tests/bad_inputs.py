"""A corpus of bad inputs for ingestion, built for real on disk, and a way to make a file unreadable as root."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codelupe_pipeline_tests.corpus import GO_FILE, PYTHON_FILE, RUST_FILE, commit_all, git, make_git_repo, write_files

GOOD_LOCAL = {"src/good.py": PYTHON_FILE, "src/ring.rs": RUST_FILE}
# Names that break naive tools: a space, a newline, and bytes that are not UTF-8 (b"caf\xe9").
WEIRD_NAMES = [b"with space.py", b"new\nline.py", b"caf\xe9.py"]


def _write_bad_files(root: Path) -> None:
    """Files every source kind must skip, each for its own reason."""
    (root / "blob.py").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))  # binary
    (root / "latin1.py").write_bytes("# caf\xe9 = 'coffee'\nprint('\xe9t\xe9')\n".encode("latin-1"))  # not UTF-8
    (root / "huge.py").write_bytes(b"x = 1  # padding\n" * (5 * 1024 * 1024 // 17 + 1))  # 5 MB
    (root / "empty.py").write_bytes(b"")
    (root / "notes.xyz").write_text("not code in any known language\n")
    write_files(root, {"node_modules/left-pad/index.js": "module.exports = 1;\n", "Cargo.lock": "version = 3\n"})


def _write_weird_names(root: Path) -> None:
    for name in WEIRD_NAMES:
        with open(os.path.join(os.fsencode(root), name), "wb") as fh:
            fh.write(f"NAME = {name!r}\n".encode() + PYTHON_FILE.encode())


def build_bad_local_dir(root: Path, outside: Path) -> None:
    """A directory with good files, every kind of bad file, symlinks that loop or leave, and a FIFO."""
    write_files(root, GOOD_LOCAL)
    _write_bad_files(root)
    _write_weird_names(root)
    (root / "loop_a.py").symlink_to(root / "loop_b.py")  # a symlink loop
    (root / "loop_b.py").symlink_to(root / "loop_a.py")
    (root / "dir_loop").symlink_to(root, target_is_directory=True)  # a directory that contains itself
    outside.write_text("SECRET = 'outside the source'\n" * 4)
    (root / "escape.py").symlink_to(outside)  # a symlink leaving the root
    (root / "alias.py").symlink_to(root / "src" / "good.py")  # inside the root: its target is ingested
    os.mkfifo(root / "pipe.py")  # reading it would block forever
    locked = root / "locked.py"
    locked.write_text(GO_FILE)
    locked.chmod(0)
    (root / "sealed").mkdir()
    (root / "sealed" / "inside.py").write_text(PYTHON_FILE)
    (root / "sealed").chmod(0)


def build_bad_git_repo(root: Path) -> str:
    """A git repository holding binary, undecodable, oversized and oddly named files, and a symlink."""
    make_git_repo(root, {"lib/good.go": GO_FILE})
    _write_bad_files(root)
    _write_weird_names(root)
    (root / "escape.py").symlink_to("../../../etc/passwd")
    return commit_all(root, "bad inputs")


def build_empty_git_repo(root: Path) -> None:
    root.mkdir(parents=True)
    git(root, "init", "--quiet", "--initial-branch=main")


# Linux capabilities, to take read-permission override away from root for a moment (see below).
_CAPABILITY_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextmanager
def permissions_enforced_for_root() -> Iterator[None]:
    """Make `chmod 000` mean something while the tests run as root.

    Root reads any file because it holds CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. Inside this block the
    calling thread drops both from its effective set (it keeps them as permitted and takes them back at the
    end), so permission bits apply to it as to any user: a mode-000 file raises PermissionError. Dagster's
    in-process executor runs the asset on this thread. Child processes (git) are unaffected: exec as root
    restores the full set. For a non-root user this is a no-op: permission bits apply already.
    """
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    saved = data[0].effective
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[0].effective = saved
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed: could not restore capabilities")
