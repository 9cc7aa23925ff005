"""A local results folder as a pyarrow filesystem that is safe to write into and read from.

:class:`LocalFolder` (wrapped in ``pyarrow.fs.PyFileSystem``) serves ``--out`` to the run
store (cluster/store.py) with the guarantees pyarrow's own LocalFileSystem lacks:

- **Never through a link.** Every folder below the root is opened relative to its parent
  with ``O_NOFOLLOW | O_DIRECTORY`` (``openat``), so a link planted anywhere below ``--out``
  is refused (:class:`LinkInTheWay`), never followed; the root itself is the user's choice.
- **Complete or absent.** A file is written to a uniquely named hidden temporary file in its
  folder, created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``), fsynced, then renamed onto
  its name; ``rename`` replaces a link at that name, never the file it points to. A failed
  write (disk full) leaves the old file whole. Readers (pandas) skip names starting with ".".
- **Never blocks.** Files are opened ``O_NONBLOCK`` and must be regular: a FIFO, socket or
  device where a file belongs is refused at once (:class:`Refused`).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.fs as pafs

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# ".<name>.<16 hex>.tmp<suffix>" (ours) and ".<name>.tmp[.png]" (the fixed names of older versions)
_TEMPORARY = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")


class Refused(OSError):
    """Something other than a regular file or a real folder is where one belongs."""


class LinkInTheWay(Refused):
    """A folder that must be real is a symbolic link or not a folder."""


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file left by an interrupted write."""
    return bool(_TEMPORARY.match(name))


def temporary_name(name: str) -> str:
    """A fresh hidden name beside ``name`` that keeps its suffix (writers that infer the
    format from the name, such as Keras, still can)."""
    return f".{name}.{secrets.token_hex(8)}.tmp{os.path.splitext(name)[1]}"


def kind_of(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a folder" if stat.S_ISDIR(mode) else "not a regular file")


class _Committing(io.RawIOBase):
    """The temporary file behind an output stream: renamed onto its name when closed after
    complete writes, removed when a write failed."""

    def __init__(self, folder_fd: int, temporary: str, name: str):
        self.folder_fd, self.temporary, self.name = folder_fd, temporary, name
        self.fd = os.open(temporary, _EXCLUSIVE, 0o666, dir_fd=folder_fd)
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            return len(data)
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self.failed:
                os.fsync(self.fd)
            os.close(self.fd)
            if self.failed:
                raise OSError("write failed")
            os.replace(self.temporary, self.name, src_dir_fd=self.folder_fd, dst_dir_fd=self.folder_fd)
        except BaseException:
            try:
                os.unlink(self.temporary, dir_fd=self.folder_fd)
            except FileNotFoundError:
                pass
            if not self.failed:
                raise
        finally:
            os.close(self.folder_fd)
            super().close()


class LocalFolder(pafs.FileSystemHandler):
    """``root`` as a pyarrow filesystem (keys are '/'-separated paths below it); see the
    module docstring for what it refuses."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def get_type_name(self) -> str:
        return "dreamctl-local"

    def normalize_path(self, path: str) -> str:
        return path.strip("/")

    def equals(self, other) -> bool:
        return isinstance(other, LocalFolder) and other.root == self.root

    # ----- walking without following links --------------------------------------------
    def _parts(self, path: str) -> list[str]:
        parts = [part for part in path.strip("/").split("/") if part]
        if any(part in (".", "..") or "\0" in part for part in parts):
            raise ValueError(f"not a path below the results folder: {path!r}")
        return parts

    def _open_folder(self, parts: list[str], create: bool = False) -> int:
        """A descriptor of the real folder ``root/parts``; FileNotFoundError when missing
        (unless ``create``), LinkInTheWay when a component is a link or no folder."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, _DIRECTORY)
        for depth, part in enumerate(parts):
            try:
                try:
                    child = os.open(part, _DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(part, _DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = self.root.joinpath(*parts[: depth + 1])
                mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                raise LinkInTheWay(f"{where} is {kind_of(mode)}; dreamctl writes and reads only real folders "
                                   f"under the results folder") from None
            finally:
                os.close(fd)
            fd = child
        return fd

    @contextmanager
    def _parent(self, path: str, create: bool = False) -> Iterator[tuple[int, str]]:
        *folders, name = self._parts(path)
        fd = self._open_folder(folders, create)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def _info(self, path: str, fd: int, name: str) -> pafs.FileInfo:
        try:
            found = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return pafs.FileInfo(path, pafs.FileType.NotFound)
        kind = (pafs.FileType.File if stat.S_ISREG(found.st_mode) else
                pafs.FileType.Directory if stat.S_ISDIR(found.st_mode) else pafs.FileType.Unknown)
        return pafs.FileInfo(path, kind, mtime_ns=found.st_mtime_ns,
                             size=found.st_size if kind == pafs.FileType.File else None)

    # ----- pyarrow's FileSystemHandler -----------------------------------------------
    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        infos = []
        for path in paths:
            if not self._parts(path):
                infos.append(pafs.FileInfo(path, pafs.FileType.Directory if self.root.is_dir() else pafs.FileType.NotFound))
                continue
            try:
                with self._parent(path) as (fd, name):
                    infos.append(self._info(path, fd, name))
            except FileNotFoundError:
                infos.append(pafs.FileInfo(path, pafs.FileType.NotFound))
            except LinkInTheWay:
                infos.append(pafs.FileInfo(path, pafs.FileType.Unknown))
        return infos

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        base = selector.base_dir.strip("/")
        try:
            fd = self._open_folder(self._parts(base))
        except FileNotFoundError:
            if selector.allow_not_found:
                return []
            raise
        try:
            return self._list(fd, base, selector.recursive)
        finally:
            os.close(fd)

    def _list(self, fd: int, base: str, recursive: bool) -> list[pafs.FileInfo]:
        infos = []
        for name in sorted(os.listdir(fd)):
            path = f"{base}/{name}" if base else name
            info = self._info(path, fd, name)
            infos.append(info)
            if recursive and info.type == pafs.FileType.Directory:
                child = os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                try:
                    infos += self._list(child, path, True)
                finally:
                    os.close(child)
        return infos

    def create_dir(self, path: str, recursive: bool = True) -> None:
        os.close(self._open_folder(self._parts(path), create=True))

    def delete_dir(self, path: str) -> None:
        with self._parent(path) as (fd, name):
            shutil.rmtree(name, dir_fd=fd)  # fd-based: never follows a link inside

    def delete_file(self, path: str) -> None:
        with self._parent(path) as (fd, name):
            os.unlink(name, dir_fd=fd)  # a link itself, never its target

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError("not needed by the run store")

    delete_dir_contents = delete_root_dir_contents = move = copy_file = open_append_stream = _unsupported

    def open_input_stream(self, path: str) -> pa.NativeFile:
        with self._parent(path) as (fd, name):
            try:
                file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                    raise
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                raise Refused(f"{self.root / path} is {kind_of(mode)}, not a regular file") from None
        mode = os.fstat(file_fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(file_fd)
            raise Refused(f"{self.root / path} is {kind_of(mode)}, not a regular file")
        fcntl.fcntl(file_fd, fcntl.F_SETFL, fcntl.fcntl(file_fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return pa.PythonFile(os.fdopen(file_fd, "rb"), mode="r")

    open_input_file = open_input_stream

    def open_output_stream(self, path: str, metadata=None) -> pa.NativeFile:
        *folders, name = self._parts(path)
        fd = self._open_folder(folders, create=True)
        try:
            return pa.PythonFile(_Committing(fd, temporary_name(name), name), mode="w")
        except BaseException:
            os.close(fd)
            raise

    def point_link(self, path: str, target: str) -> None:
        """Make ``path`` a link to ``target`` (a name in the same folder), atomically."""
        with self._parent(path, create=True) as (fd, name):
            while True:
                temporary = f".{name}.{secrets.token_hex(8)}.tmp"
                try:
                    os.symlink(target, temporary, dir_fd=fd)  # fails when the name exists, as O_EXCL
                    break
                except FileExistsError:
                    continue
            try:
                os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                os.unlink(temporary, dir_fd=fd)
                raise

    def read_link(self, path: str) -> str | None:
        """The target of the link ``path``, or None when it is no link."""
        try:
            with self._parent(path) as (fd, name):
                return os.readlink(name, dir_fd=fd)
        except (FileNotFoundError, LinkInTheWay):
            return None
        except OSError as error:
            if error.errno == errno.EINVAL:  # exists, but no link
                return None
            raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a unique hidden temporary path in ``path``'s folder (created empty and
    exclusively) for writers that need a file name (``keras.Model.save``); on success it is
    renamed onto ``path``, on an exception removed. For files outside the results folder."""
    path = Path(path)
    while True:
        temporary = path.with_name(temporary_name(path.name))
        try:
            os.close(os.open(temporary, _EXCLUSIVE, 0o666))
            break
        except FileExistsError:  # a name taken by chance (or planted): draw another
            continue
    try:
        yield temporary
        if temporary.is_symlink():  # swapped for a link while the caller wrote: never publish it
            raise OSError(f"temporary file {temporary} was replaced by a link")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
