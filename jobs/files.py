"""Writing result files safely: complete or absent, never through a link.

A file is written to a hidden temporary name in its own folder, created exclusively
(``O_CREAT | O_EXCL | O_NOFOLLOW``, a random name, so nothing planted there is opened or
followed), then ``os.replace``d onto its final name. ``rename`` replaces a link at the final
name itself, never the file the link points to. Readers (pandas, pyarrow) ignore names
starting with ``.``, so a temporary file is invisible to them while it is written.

Folders are the other way out of a result folder: :func:`real_dir` creates a folder
component by component and refuses (or replaces) any symbolic link on the way.
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# ".<name>.<16 hex>.tmp<suffix>" (ours) and ".<name>.tmp[.png]" (the fixed names of older versions)
_TEMPORARY = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file left by an interrupted write."""
    return bool(_TEMPORARY.match(name))


def _create_temporary(path: Path) -> tuple[int, Path]:
    """An open descriptor and the name of a new, empty, uniquely named hidden file next to
    ``path``; its name ends with ``path``'s suffix so writers that infer the format from
    the name (matplotlib, PIL) still can. Mode 0o666 minus the umask, as ``open`` gives."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp{path.suffix}")
        try:
            return os.open(temporary, _EXCLUSIVE, 0o666), temporary
        except FileExistsError:  # a name taken by chance (or planted): draw another
            continue


@contextmanager
def atomic_file(path: Path, sync: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file open for writing; on success it becomes ``path`` (flushed and,
    when ``sync``, fsynced first), on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    descriptor, temporary = _create_temporary(path)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            if sync:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a unique hidden temporary path in ``path``'s folder (created empty and
    exclusively) for writers that need a file name (``figure.savefig``, ``Image.save``);
    on success it is renamed onto ``path``, on an exception removed."""
    path = Path(path)
    descriptor, temporary = _create_temporary(path)
    os.close(descriptor)
    try:
        yield temporary
        if temporary.is_symlink():  # swapped for a link while the caller wrote: never publish it
            raise OSError(f"temporary file {temporary} was replaced by a link")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` as the whole content of ``path``: complete or not at all."""
    with atomic_file(path, sync) as file:
        file.write(data)


def atomic_symlink(path: Path, target: str) -> None:
    """Point the link ``path`` at ``target`` (relative to ``path``'s folder) atomically."""
    path = Path(path)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            os.symlink(target, temporary)  # fails if the name exists: exclusive as O_EXCL
            break
        except FileExistsError:
            continue
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class LinkInTheWay(OSError):
    """A folder that must be real is a symbolic link (or not a folder)."""


def real_dir(base: Path, *names: str, replace_links: bool = False,
             on_replace: Callable[[Path], None] | None = None) -> Path:
    """``base / names...`` as real folders, created as needed. ``base`` is trusted (the
    user's ``--out``); below it a symbolic link or a file where a folder belongs raises
    :class:`LinkInTheWay`, or with ``replace_links`` is removed (the link itself, never what it
    points to) and replaced by an empty folder, reported to ``on_replace``."""
    folder = Path(base)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(f"not a single folder name: {name!r}")
        folder = folder / name
        try:
            os.mkdir(folder)  # never follows a link at ``folder``: EEXIST instead
            continue
        except FileExistsError:
            pass
        if folder.is_symlink() or not folder.is_dir():
            if not replace_links:
                kind = "a symbolic link" if folder.is_symlink() else "not a folder"
                raise LinkInTheWay(f"{folder} is {kind}; dreamctl writes only into real folders under --out")
            folder.unlink()  # the link (or stray file) itself, never what a link points to
            os.mkdir(folder)
            if on_replace is not None:
                on_replace(folder)
    return folder


def follow_latest(path: Path) -> Path:
    """The run a ``<job>/latest`` names: a link here, a small file holding the run id where a
    run was copied from an object store (cluster/object_store.py); any other path as given."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return path.resolve() if path.is_symlink() else path
    try:
        run_id = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return path
    if not run_id or "/" in run_id or os.sep in run_id or run_id in (".", ".."):
        return path
    return path.parent / run_id
