"""Read a TensorFlow checkpoint (tensor bundle) without TensorFlow.

A bundle is ``<prefix>.index`` plus ``<prefix>.data-0000k-of-0000n`` shards:

- the index is a LevelDB-format SSTable (sorted string table): data blocks of
  prefix-compressed ``key -> value`` entries with restart points, an index block pointing at
  the data blocks, and a 48-byte footer (two block handles, padding, the magic number
  ``0xdb4775248b80fb57``). Every block is followed by a 5-byte trailer (compression type,
  crc). TensorFlow writes bundles uncompressed; a compressed block is refused.
- the value under the empty key is a ``BundleHeaderProto`` (number of shards, endianness);
  every other value is a ``BundleEntryProto`` (dtype, shape, shard, offset, size) locating
  the tensor's raw little-endian bytes in a data shard.
- string tensors (only the ``_CHECKPOINTABLE_OBJECT_GRAPH`` is read) are stored as one
  varint length per element, a 4-byte checksum of the lengths, then the bytes.

Everything is untrusted: block handles, entry offsets and sizes are checked against the
file sizes, declared shapes against the stored byte counts, before anything is allocated.
Shard files must be plain files inside the bundle's folder (no symlinks, one hard link).
Tensors are read lazily, one at a time, when a caller asks for them: numeric tensors
as views of the memory-mapped shard.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelconv import protowire as pw
from modelconv.errors import ModelLoadError, UnsafeModelError
from modelconv.fileio import FileView

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER = 5
#: largest .index file read into memory
MAX_INDEX_BYTES = 256 * 2**20
#: largest single tensor (as in the Keras reader)
MAX_TENSOR_BYTES = 8 * 2**30
#: largest string tensor (the checkpoint object graph)
MAX_STRING_TENSOR_BYTES = 256 * 2**20
MAX_RANK = 32
MAX_SHARDS = 100_000
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

DT_STRING = 7
DT_BFLOAT16 = 14
#: TensorFlow DataType enum -> numpy dtype (little-endian)
TF_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
    DT_BFLOAT16: np.dtype("<u2"),  # stored as raw 16-bit words, widened to float32 on read
}


# --------------------------------------------------------------------------------------
# SSTable


def read_table(data: bytes, display: str) -> dict[bytes, memoryview]:
    """Every ``key -> value`` of an uncompressed LevelDB-format table held in ``data``."""
    view = memoryview(data)
    if len(view) < FOOTER_SIZE:
        raise ModelLoadError(f"index file is truncated ({len(view)} bytes, the footer alone "
                             f"is {FOOTER_SIZE})", path=display)
    footer = view[len(view) - FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise ModelLoadError("not a tensor-bundle index (bad table magic number; truncated?)",
                             path=display)
    try:
        _meta_off, pos = pw.read_varint(footer, 0, 40)
        _meta_size, pos = pw.read_varint(footer, pos, 40)
        index_off, pos = pw.read_varint(footer, pos, 40)
        index_size, pos = pw.read_varint(footer, pos, 40)
    except pw.ProtoError as exc:
        raise ModelLoadError(f"corrupt index footer ({exc})", path=display) from exc
    limit = len(view) - FOOTER_SIZE
    out: dict[bytes, memoryview] = {}
    previous: bytes | None = None
    for handle_key, handle in _block_entries(_block(view, index_off, index_size, limit, display),
                                             display):
        try:
            off, p = pw.read_varint(handle, 0, len(handle))
            size, _ = pw.read_varint(handle, p, len(handle))
        except pw.ProtoError as exc:
            raise ModelLoadError(f"corrupt block handle in the index ({exc})",
                                 path=display) from exc
        for key, value in _block_entries(_block(view, off, size, limit, display), display):
            if previous is not None and key <= previous:
                raise ModelLoadError("index keys are not sorted (corrupt table)", path=display)
            if key > handle_key:
                raise ModelLoadError("data block key beyond its index entry (corrupt table)",
                                     path=display)
            out[key] = value
            previous = key
    return out


def _block(view: memoryview, offset: int, size: int, limit: int, display: str) -> memoryview:
    """The contents of the block at ``offset`` (its trailer checked, not included)."""
    if offset > limit or size > limit - offset or limit - offset - size < BLOCK_TRAILER:
        raise ModelLoadError(f"block at offset {offset} (+{size} bytes) lies outside the "
                             f"index file ({limit} bytes before the footer)", path=display)
    kind = view[offset + size]
    if kind != 0:
        what = "snappy-compressed" if kind == 1 else f"compressed (type {kind})"
        raise ModelLoadError(
            f"the index has a {what} block; modelconv reads only uncompressed tensor bundles "
            "(the kind TensorFlow writes)", path=display)
    return view[offset:offset + size]


def _block_entries(block: memoryview, display: str) -> list[tuple[bytes, memoryview]]:
    """Decode one block: prefix-compressed entries, then restart offsets and their count."""
    n = len(block)
    if n < 4:
        raise ModelLoadError("table block shorter than its restart count", path=display)
    num_restarts = struct.unpack_from("<I", block, n - 4)[0]
    if num_restarts > (n - 4) // 4:
        raise ModelLoadError(f"table block declares {num_restarts} restart points, it has "
                             f"room for {(n - 4) // 4}", path=display)
    data_end = n - 4 - 4 * num_restarts
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, data_end))
    if any(r >= max(data_end, 1) for r in restarts):
        raise ModelLoadError("table block restart point outside its entries", path=display)
    entries: list[tuple[bytes, memoryview]] = []
    key = b""
    pos = 0
    try:
        while pos < data_end:
            start = pos
            shared, pos = pw.read_varint(block, pos, data_end)
            unshared, pos = pw.read_varint(block, pos, data_end)
            value_len, pos = pw.read_varint(block, pos, data_end)
            if shared > len(key) or (start in restarts and shared):
                raise ModelLoadError("table entry shares more key bytes than exist",
                                     path=display)
            if unshared > data_end - pos or value_len > data_end - pos - unshared:
                raise ModelLoadError("table entry runs past the end of its block",
                                     path=display)
            key = key[:shared] + bytes(block[pos:pos + unshared])
            pos += unshared
            entries.append((key, block[pos:pos + value_len]))
            pos += value_len
    except pw.ProtoError as exc:
        raise ModelLoadError(f"corrupt table block ({exc})", path=display) from exc
    return entries


# --------------------------------------------------------------------------------------
# files


def open_member(base: Path, name: str, display: str) -> tuple[io.BufferedReader, os.stat_result]:
    """Open ``base/name`` for reading: a regular file inside ``base`` (no symlink, one link).

    ``name`` must be a plain file name; the returned file is opened without following
    symlinks and its status comes from the open descriptor (no check-then-use race).
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UnsafeModelError(f"'{name}' is not a plain file name", path=display)
    target = base / name
    if target.is_symlink() or not target.resolve().is_relative_to(base.resolve()):
        raise UnsafeModelError(f"'{target}' is a link (may lead outside the model's folder)",
                               path=display, hint="Copy the file instead of linking it")
    if not target.exists():
        raise ModelLoadError(f"'{target}' is missing", path=display,
                             hint="Copy the whole SavedModel folder, variables/ included")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        raise ModelLoadError(f"cannot open '{target}' ({exc.strerror})", path=display) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeModelError(f"'{target}' is not a regular file", path=display)
    if info.st_nlink > 1:
        os.close(fd)
        raise UnsafeModelError(f"'{target}' is a hard link (may alias a file elsewhere)",
                               path=display, hint="Copy the file instead of linking it")
    return os.fdopen(fd, "rb"), info


def read_member(base: Path, name: str, limit: int, display: str) -> bytes:
    """The whole of ``base/name`` (checked as :func:`open_member`), at most ``limit`` bytes."""
    fh, info = open_member(base, name, display)
    with fh:
        if info.st_size > limit:
            raise ModelLoadError(f"'{name}' is too large ({info.st_size} bytes, limit {limit})",
                                 path=display)
        data = fh.read(limit + 1)
    if len(data) != info.st_size:
        raise ModelLoadError(f"'{name}' changed while it was read", path=display)
    return data


# --------------------------------------------------------------------------------------
# bundle


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives: dtype (TF enum), shape, shard, byte offset and size."""

    key: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool = False

    @property
    def numpy_dtype(self) -> np.dtype[Any] | None:
        """The numpy dtype the tensor is returned as (None: not a numeric tensor)."""
        if self.dtype == DT_BFLOAT16:
            return np.dtype(np.float32)
        return TF_DTYPES.get(self.dtype)


def _parse_entry(key: str, value: memoryview) -> BundleEntry:
    msg = pw.parse(value)
    shape_msg = pw.parse(pw.get_bytes(msg, 2))
    if pw.get_int(shape_msg, 3):
        raise pw.ProtoError("tensor of unknown rank")
    dims = [pw.to_int64(pw.get_int(pw.parse(d), 1)) for d in pw.get_messages(shape_msg, 2)]
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise pw.ProtoError(f"bad shape {dims[:8]}")
    return BundleEntry(
        key=key, dtype=pw.get_int(msg, 1), shape=tuple(dims),
        shard=pw.to_int64(pw.get_int(msg, 3)), offset=pw.to_int64(pw.get_int(msg, 4)),
        size=pw.to_int64(pw.get_int(msg, 5)), sliced=bool(msg.get(7)),
    )


class TensorBundle:
    """An opened tensor bundle ``<folder>/<prefix>.index`` + data shards; tensors read lazily."""

    def __init__(self, folder: str | os.PathLike[str], prefix: str = "variables",
                 display: str | None = None):
        self.folder = Path(folder)
        self.prefix = prefix
        self.display = display or str(self.folder)
        index_name = f"{prefix}.index"
        raw = read_member(self.folder, index_name, MAX_INDEX_BYTES, self.display)
        shown = f"{self.display}/{index_name}"
        table = read_table(raw, shown)
        if b"" not in table:
            raise ModelLoadError("tensor-bundle index has no header entry", path=shown)
        try:
            header = pw.parse(table.pop(b""))
            self.num_shards = pw.to_int64(pw.get_int(header, 1))
            endianness = pw.get_int(header, 2)
            self.entries = {k.decode("utf-8"): _parse_entry(k.decode("utf-8"), v)
                            for k, v in table.items()}
        except (pw.ProtoError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"corrupt tensor-bundle entry ({exc})", path=shown) from exc
        if endianness != 0:
            raise ModelLoadError("big-endian tensor bundle (not supported)", path=shown)
        if not 0 < self.num_shards <= MAX_SHARDS:
            raise ModelLoadError(f"tensor bundle declares {self.num_shards} data shards",
                                 path=shown)
        self._files: dict[int, tuple[io.BufferedReader, int]] = {}
        self._views: dict[int, FileView] = {}
        try:
            for entry in self.entries.values():
                self._check_entry(entry)
        except BaseException:
            self.close()
            raise

    def shard_name(self, shard: int) -> str:
        """File name of data shard ``shard`` (as TensorFlow names them)."""
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def _shard(self, shard: int) -> tuple[io.BufferedReader, int]:
        if shard not in self._files:
            fh, info = open_member(self.folder, self.shard_name(shard), self.display)
            self._files[shard] = (fh, info.st_size)
        return self._files[shard]

    def _check_entry(self, entry: BundleEntry) -> None:
        where = f"tensor '{entry.key}'"
        if not 0 <= entry.shard < self.num_shards:
            raise ModelLoadError(f"{where} is in shard {entry.shard}, the bundle has "
                                 f"{self.num_shards}", path=self.display)
        if entry.sliced:
            return  # partitioned variable: data lives under slice keys, refused on read
        _, file_size = self._shard(entry.shard)
        if entry.offset < 0 or entry.size < 0 or entry.offset > file_size or \
                entry.size > file_size - entry.offset:
            raise ModelLoadError(
                f"{where} asks for bytes {entry.offset}..{entry.offset + entry.size} of "
                f"{self.shard_name(entry.shard)}, which has {file_size}", path=self.display)
        dtype = TF_DTYPES.get(entry.dtype)
        if dtype is not None:
            count = 1
            for d in entry.shape:
                count *= d
            if count * dtype.itemsize != entry.size:
                raise ModelLoadError(
                    f"{where} declares shape {list(entry.shape)} ({count * dtype.itemsize} "
                    f"bytes) but stores {entry.size} bytes", path=self.display)

    def entry(self, key: str) -> BundleEntry:
        """The index entry of ``key``."""
        found = self.entries.get(key)
        if found is None:
            raise ModelLoadError(f"checkpoint has no tensor '{key}'", path=self.display)
        return found

    def _read_bytes(self, entry: BundleEntry, into: memoryview | None = None) -> bytes:
        fh, file_size = self._shard(entry.shard)
        if entry.offset + entry.size > file_size:  # checked at open; the file may have shrunk
            raise ModelLoadError(f"tensor '{entry.key}' lies past the end of its shard",
                                 path=self.display)
        fh.seek(entry.offset)
        if into is not None:
            got = fh.readinto(into)
            data = b""
        else:
            data = fh.read(entry.size)
            got = len(data)
        if got != entry.size:
            raise ModelLoadError(f"tensor '{entry.key}' is truncated ({got} of {entry.size} "
                                 "bytes)", path=self.display)
        return data

    def read(self, key: str) -> np.ndarray:
        """Tensor ``key`` as a numpy array (bfloat16 widened to float32).

        Numeric tensors are read-only views of the memory-mapped data shard (the page
        cache holds them, nothing is copied); bfloat16 is widened into a new array.
        """
        entry = self.entry(key)
        if entry.sliced:
            raise ModelLoadError(f"tensor '{key}' is a partitioned variable (not supported)",
                                 path=self.display)
        dtype = TF_DTYPES.get(entry.dtype)
        if dtype is None:
            raise ModelLoadError(f"tensor '{key}' has TensorFlow dtype {entry.dtype}, not a "
                                 "numeric type", path=self.display)
        if entry.size > MAX_TENSOR_BYTES:
            raise ModelLoadError(f"tensor '{key}' declares {entry.size} bytes",
                                 path=self.display)
        if entry.dtype != DT_BFLOAT16:  # a read-only view of the mapped shard: no copy
            view = self._views.get(entry.shard)
            if view is None:
                fh, _ = self._shard(entry.shard)
                view = self._views[entry.shard] = FileView(
                    self.folder / self.shard_name(entry.shard), file=fh,
                    display=f"{self.display}/{self.shard_name(entry.shard)}")
            mapped = view.array(entry.offset, dtype, entry.shape, f"tensor '{key}'")
            return mapped.astype(dtype.newbyteorder("="), copy=False)
        arr = np.empty(entry.size // dtype.itemsize, dtype=dtype)
        self._read_bytes(entry, arr.view(np.uint8).data)
        if entry.dtype == DT_BFLOAT16:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.reshape(entry.shape).astype(arr.dtype.newbyteorder("="), copy=False)

    def read_string(self, key: str) -> bytes:
        """Scalar string tensor ``key`` (length varint, 4-byte checksum, bytes)."""
        entry = self.entry(key)
        if entry.dtype != DT_STRING or entry.shape != ():
            raise ModelLoadError(f"tensor '{key}' is not a scalar string", path=self.display)
        if entry.size > MAX_STRING_TENSOR_BYTES:
            raise ModelLoadError(f"tensor '{key}' declares {entry.size} bytes",
                                 path=self.display)
        data = self._read_bytes(entry)
        try:
            length, pos = pw.read_varint(data, 0, len(data))
        except pw.ProtoError as exc:
            raise ModelLoadError(f"string tensor '{key}' is corrupt ({exc})",
                                 path=self.display) from exc
        pos += 4  # masked crc32c of the lengths
        if pos + length != len(data):
            raise ModelLoadError(f"string tensor '{key}' declares {length} bytes, its entry "
                                 f"holds {len(data) - min(pos, len(data))}", path=self.display)
        return data[pos:]

    def close(self) -> None:
        """Close the open shard files."""
        for fh, _ in self._files.values():
            with contextlib.suppress(OSError):
                fh.close()
        self._files.clear()
        self._views.clear()  # arrays handed out keep their mappings

    def __enter__(self) -> TensorBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
