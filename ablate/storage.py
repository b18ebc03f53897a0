"""Where ablate writes: local paths and pyarrow filesystem URIs (``file://``, ``s3://``, ``gs://``...).

Every file goes through pyarrow's filesystem layer, so a sweep directory can be on local disk, NFS or
an object store, and every file is written whole: on local disk and NFS to a hidden temporary name in
the same directory and then renamed into place, on object stores as one object put. A writer killed
at any instant therefore leaves either nothing or a hidden temporary file, which readers (and
pyarrow's dataset discovery, which skips names starting with ``_`` or ``.``) ignore.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs

# Native pyarrow filesystems and fsspec protocols whose writes are atomic object puts.
_OBJECT_STORE_TYPES = {"s3", "gcs", "abfs"}
_OBJECT_STORE_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "az", "memory"}
_CHUNK = 16 << 20  # bytes per read/write when copying a file


def resolve(location: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path of ``location`` (a path in ``filesystem``, or a local path or URI)."""
    if filesystem is not None:
        return filesystem, location.rstrip("/")
    if "://" not in location:
        return pafs.LocalFileSystem(), os.path.abspath(location)
    fs, path = pafs.FileSystem.from_uri(location)
    return fs, path.rstrip("/")


def absolute(location: str, base: str | None = None) -> str:
    """``location`` as it must cross a process boundary: a URI unchanged, a ``~`` path unchanged (it
    names the same place on every node), any other path absolute against ``base`` (default: the
    working directory). Ray Tune runs trials in working directories of its own choosing."""
    if "://" in location or location.startswith("~"):
        return location
    return os.path.normpath(os.path.join(base or os.getcwd(), location))


def join(location: str, *parts: str) -> str:
    """``location/part/...`` for a path or a URI (URIs keep their scheme and escapes)."""
    return "/".join([location.rstrip("/"), *parts])


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def local_path(location: str) -> str:
    """The local path of a plain path or ``file://`` URI (percent-escapes such as ``%20`` decoded)."""
    return pafs.FileSystem.from_uri(location)[1] if location.startswith("file://") else os.path.abspath(location)


def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _writes_are_object_puts(fs: pafs.FileSystem) -> bool:
    """True on object stores, where writing an object is atomic and renames are copies."""
    if isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, pafs.FSSpecHandler):
        protocol = fs.handler.fs.protocol
        protocols = {protocol} if isinstance(protocol, str) else set(protocol)
        return bool(protocols & _OBJECT_STORE_PROTOCOLS)
    return fs.type_name in _OBJECT_STORE_TYPES


def _write_whole(fs: pafs.FileSystem, path: str, fill: Callable[[pa.NativeFile], None]) -> None:
    """Write ``path`` (its directory exists) with ``fill(stream)`` so that readers see the whole file or
    nothing: a new object on object stores, elsewhere a temporary file renamed into place."""
    if _writes_are_object_puts(fs):
        with fs.open_output_stream(path, compression=None) as stream:
            fill(stream)
        return
    directory, name = path.rsplit("/", 1)
    temporary = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open_output_stream(temporary, compression=None) as stream:
            fill(stream)
        fs.move(temporary, path)
    except Exception:
        if fs.get_file_info(temporary).type != pafs.FileType.NotFound:
            fs.delete_file(temporary)
        raise


def put(fs: pafs.FileSystem, path: str, data: bytes | pa.Buffer) -> None:
    """Write ``data`` to ``path`` (its directory exists) so that readers see the whole file or nothing."""
    _write_whole(fs, path, lambda stream: stream.write(data))


def upload(local_file: str, location: str) -> None:
    """Copy a local file to a path or URI, whole or not at all, streamed (checkpoints can be large)."""
    fs, path = resolve(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with open(local_file, "rb") as source:
        _write_whole(fs, path, lambda stream: shutil.copyfileobj(source, stream, _CHUNK))


def download(location: str, local_file: str) -> None:
    """Copy a file at a path or URI to a local file, streamed."""
    fs, path = resolve(location)
    with fs.open_input_stream(path, compression=None) as source, open(local_file, "wb") as target:
        shutil.copyfileobj(source, target, _CHUNK)


def write_file(location: str, data: bytes | pa.Buffer, filesystem: pafs.FileSystem | None = None) -> None:
    """:func:`put` to a path or URI, creating its directory first."""
    fs, path = resolve(location, filesystem)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    put(fs, path, data)


def read_bytes(location: str, filesystem: pafs.FileSystem | None = None) -> bytes:
    fs, path = resolve(location, filesystem)
    with fs.open_input_stream(path, compression=None) as source:
        return source.read()
