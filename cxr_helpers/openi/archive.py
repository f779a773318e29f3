"""Reading the download as it came: a folder, a ``.tgz``/``.tar`` or a ``.zip``, never unpacked on disk.

``iter_members`` yields the files whose names end with the given suffixes, in a fixed order,
from any of the three. A folder's files are read by whoever needs them (``Member.path``); an
archive is streamed once from start to end and each member's bytes are read into memory
(``Member.data``), so nothing is ever written next to the download. A damaged or truncated
archive ends the walk with an ``ArchiveDamaged`` record instead of an exception, so what was
read before it is kept and the summary says where the archive broke.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tar.xz")


@dataclass(frozen=True)
class Member:
    """One file of the download: its name (relative path or archive member) and where its bytes are."""

    name: str
    path: str | None = None  # a file on disk (folder form), read when needed
    data: bytes | None = None  # the bytes (archive form)

    def read(self) -> bytes:
        """The file's bytes."""
        return self.data if self.data is not None else Path(self.path).read_bytes()


@dataclass(frozen=True)
class ArchiveDamaged:
    """The archive could not be read past this point (truncated download, bad gzip data)."""

    archive: str
    after: str  # the last member read, "" if none
    error: str


def archive_kind(path: Path) -> str:
    """``folder``, ``tar`` or ``zip``; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise ValueError(f"{path}: expected a folder, a .tgz/.tar archive or a .zip archive")


def base_name(name: str) -> str:
    """The last part of a member name or relative path."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _wanted(name: str, suffixes: tuple[str, ...]) -> bool:
    """True for a file name ending with one of the suffixes (any case), hidden files excluded."""
    base = base_name(name)
    return base.lower().endswith(suffixes) and not base.startswith((".", "._"))


def iter_members(path: Path, suffixes: tuple[str, ...]) -> Iterator[Member | ArchiveDamaged]:
    """Files of a folder (recursively, sorted), a tar or a zip whose names end with ``suffixes``."""
    kind = archive_kind(path)
    if kind == "folder":
        yield from _iter_folder(Path(path), suffixes)
    elif kind == "tar":
        yield from _iter_tar(Path(path), suffixes)
    else:
        yield from _iter_zip(Path(path), suffixes)


def _iter_folder(folder: Path, suffixes: tuple[str, ...]) -> Iterator[Member]:
    """Files under a folder in sorted relative-path order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, name) for name in files if _wanted(name, suffixes)]
    for full in sorted(found, key=lambda p: os.path.relpath(p, folder)):
        yield Member(os.path.relpath(full, folder), path=full)


def _iter_tar(archive: Path, suffixes: tuple[str, ...]) -> Iterator[Member | ArchiveDamaged]:
    """Regular-file members of a tar archive in archive order, streamed (``r|*``)."""
    last = ""
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for info in tar:
                if not info.isfile() or not _wanted(info.name, suffixes):
                    continue
                handle = tar.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    raise EOFError(f"member {info.name} is cut short")
                last = info.name
                yield Member(info.name, data=data)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        yield ArchiveDamaged(str(archive), last, f"{type(error).__name__}: {error}")


def _iter_zip(archive: Path, suffixes: tuple[str, ...]) -> Iterator[Member | ArchiveDamaged]:
    """File members of a zip archive in name order."""
    last = ""
    try:
        with zipfile.ZipFile(archive) as handle:
            for info in sorted(handle.infolist(), key=lambda i: i.filename):
                if info.is_dir() or not _wanted(info.filename, suffixes):
                    continue
                data = handle.read(info)
                last = info.filename
                yield Member(info.filename, data=data)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        yield ArchiveDamaged(str(archive), last, f"{type(error).__name__}: {error}")
