"""Hugging Face safetensors checkpoints, read and written with numpy only.

Reading needs no torch and no ``safetensors`` package: the format is small enough to parse
here, and owning the parser lets every error name the file and the problem.

File format (``*.safetensors``)::

    bytes 0..7        N, the header length: unsigned 64-bit little-endian
    bytes 8..8+N      JSON object (UTF-8, may end in spaces):
                        {"__metadata__": {str: str},                       (optional)
                         "<tensor name>": {"dtype": "F32", "shape": [d0, d1, ...],
                                           "data_offsets": [begin, end]}, ...}
    bytes 8+N..       the data buffer; a tensor's bytes are buffer[begin:end], C order,
                      little-endian, end - begin == prod(shape) * itemsize

A model directory holds either ``model.safetensors`` or shards
``model-00001-of-0000K.safetensors`` named by ``model.safetensors.index.json``
(``{"metadata": {...}, "weight_map": {"<tensor name>": "<shard file name>"}}``).

Each file is memory-mapped once (``np.memmap``, read-only); tensors are zero-copy views of
the map, so a large checkpoint is never read twice and only the pages used are touched.
BF16 tensors come back as their bit patterns (``numpy.uint16``, the storage convention of
``vp.spec.numerics``); :meth:`Checkpoint.fp32` converts any float tensor to fp32 exactly.

Any problem with the files raises :class:`CheckpointError` (a ``ValueError``) whose message
starts with the file's path.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from vp.spec import numerics

__all__ = [
    "CheckpointError", "TensorInfo", "SafetensorsFile", "Checkpoint",
    "SAFETENSORS_DTYPES", "SINGLE_FILE", "INDEX_FILE",
    "load_checkpoint", "save_safetensors", "save_checkpoint",
]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

#: safetensors dtype name -> numpy storage dtype (little-endian). BF16 is stored as its bit
#: pattern in uint16 (numerics' convention). F8 types and anything else are unsupported.
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
#: numpy dtype -> safetensors name, for the writer (uint16 is U16 unless declared BF16).
_NAME_OF_DTYPE = {dt.newbyteorder("<") if dt.itemsize > 1 else dt: name
                  for name, dt in SAFETENSORS_DTYPES.items() if name != "BF16"}

#: The safetensors library refuses headers above 100 MB; so do we (a corrupt length field
#: would otherwise make us allocate gigabytes).
MAX_HEADER_BYTES = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or unsupported (message names it)."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: ``file``, absolute byte ``offset`` in it, ``nbytes``, and its
    safetensors ``dtype`` name and ``shape``."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    offset: int
    nbytes: int

    @property
    def numpy_dtype(self) -> np.dtype:
        return SAFETENSORS_DTYPES[self.dtype]


# ------------------------------------------------------------------------------ reading

class SafetensorsFile:
    """One ``*.safetensors`` file: its header parsed and checked, its bytes memory-mapped.

    ``metadata`` is the ``__metadata__`` dict (str -> str, possibly empty); ``infos`` maps each
    tensor name to its :class:`TensorInfo`; ``get(name)`` returns a read-only view.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.metadata: dict[str, str] = {}
        self.infos: dict[str, TensorInfo] = {}
        self._map: np.memmap | None = None
        self._parse()

    def _fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {problem}")

    def _parse(self) -> None:
        if not self.path.is_file():
            raise self._fail("no such file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise self._fail(f"truncated header: the file has {size} bytes, fewer than "
                                 f"the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise self._fail(f"corrupt header: header length {n} bytes exceeds the "
                                 f"{MAX_HEADER_BYTES}-byte limit")
            if 8 + n > size:
                raise self._fail(f"truncated header: header length {n} bytes but only "
                                 f"{size - 8} bytes follow the length field")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self._fail(f"corrupt header: not valid UTF-8 JSON ({e})") from None
        if not isinstance(header, dict):
            raise self._fail(f"corrupt header: expected a JSON object, got "
                             f"{type(header).__name__}")

        data_start, data_size = 8 + n, size - 8 - n
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in meta.items()):
            raise self._fail("corrupt header: __metadata__ must map strings to strings")
        self.metadata = dict(meta)

        spans = []
        for name, entry in header.items():
            info = self._tensor_info(name, entry, data_start, data_size)
            self.infos[name] = info
            if info.nbytes:
                spans.append((info.offset, info.offset + info.nbytes, name))
        spans.sort()
        for (b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise self._fail(f"corrupt header: tensors {n0!r} and {n1!r} overlap")

    def _tensor_info(self, name: str, entry, data_start: int, data_size: int) -> TensorInfo:
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            raise self._fail(f"corrupt header: tensor {name!r} needs dtype, shape and "
                             f"data_offsets, got {entry!r}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise self._fail(f"tensor {name!r} has unsupported dtype {dtype!r} (supported: "
                             f"{', '.join(SAFETENSORS_DTYPES)})")
        if (not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise self._fail(f"corrupt header: tensor {name!r} has shape {shape!r}; expected "
                             f"a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise self._fail(f"corrupt header: tensor {name!r} has data_offsets {offsets!r}; "
                             f"expected [begin, end] with 0 <= begin <= end")
        begin, end = offsets
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if end - begin != nbytes:
            raise self._fail(f"corrupt header: tensor {name!r} ({dtype} {shape}) needs "
                             f"{nbytes} bytes but data_offsets {offsets} span {end - begin}")
        if end > data_size:
            raise self._fail(f"tensor {name!r}: data_offsets {offsets} lie outside the file "
                             f"(its data buffer has {data_size} bytes; file truncated?)")
        return TensorInfo(name, dtype, tuple(shape), self.path, data_start + begin, nbytes)

    # -- access

    def keys(self) -> list[str]:
        return list(self.infos)

    def _mapped(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._map

    def get(self, name: str) -> np.ndarray:
        """The stored tensor as a read-only numpy view (BF16 as uint16 bit patterns)."""
        try:
            info = self.infos[name]
        except KeyError:
            raise self._fail(f"no tensor named {name!r}") from None
        dt = info.numpy_dtype
        if info.nbytes == 0:
            return np.zeros(info.shape, dtype=dt)
        buf = self._mapped()[info.offset:info.offset + info.nbytes]
        return buf.view(dt).reshape(info.shape).view(np.ndarray)   # plain array, map-backed

    def close(self) -> None:
        """Drop this object's reference to the map (views already handed out keep it alive)."""
        self._map = None


class Checkpoint(Mapping[str, np.ndarray]):
    """Every tensor of a model directory, single-file or sharded. A read-only mapping
    ``name -> stored array`` (BF16 as uint16 bit patterns); :meth:`fp32` converts exactly.

    Build it with :func:`load_checkpoint`.
    """

    def __init__(self, files: list[SafetensorsFile], owner: dict[str, SafetensorsFile],
                 source: Path):
        self.files = files
        self._owner = owner
        self.source = source          # the file (single) or index (sharded) it came from

    @property
    def metadata(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for f in self.files:
            merged.update(f.metadata)
        return merged

    def info(self, name: str) -> TensorInfo:
        return self._owner_of(name).infos[name]

    def _owner_of(self, name: str) -> SafetensorsFile:
        try:
            return self._owner[name]
        except KeyError:                                        # the Mapping contract
            raise KeyError(f"{self.source}: no tensor named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._owner

    def __getitem__(self, name: str) -> np.ndarray:
        return self._owner_of(name).get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner)

    def __len__(self) -> int:
        return len(self._owner)

    def fp32(self, name: str) -> np.ndarray:
        """The tensor as float32: F32 as is (a read-only view), F16, BF16 and F64 converted
        (F16 and BF16 exactly; F64 rounded to nearest). Integer tensors raise."""
        info = self.info(name)
        x = self[name]
        if info.dtype == "F32":
            return x
        if info.dtype == "BF16":
            return numerics.from_bf16(x)
        if info.dtype in ("F16", "F64"):
            return x.astype(np.float32)
        raise CheckpointError(f"{info.file}: tensor {name!r} has dtype {info.dtype}; "
                              f"expected a float tensor (F32, F16, BF16 or F64)")

    def close(self) -> None:
        for f in self.files:
            f.close()


def load_checkpoint(model_dir: str | os.PathLike) -> Checkpoint:
    """Open the safetensors weights of a Hugging Face model directory (or one ``.safetensors``
    file): ``model.safetensors``, else ``model.safetensors.index.json`` and its shards."""
    path = Path(model_dir)
    if path.is_file() and path.suffix == ".safetensors":
        f = SafetensorsFile(path)
        return Checkpoint([f], {n: f for n in f.infos}, path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    single, index = path / SINGLE_FILE, path / INDEX_FILE
    if single.is_file():
        f = SafetensorsFile(single)
        return Checkpoint([f], {n: f for n in f.infos}, single)
    if index.is_file():
        return _load_sharded(index)
    found = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".h5",
                                                                  ".msgpack", ".safetensors"))
    hint = (f" (found {', '.join(found)}: only safetensors weights are supported; convert "
            f"them with transformers' save_pretrained(safe_serialization=True))" if found else "")
    raise CheckpointError(f"{path}: no {SINGLE_FILE} and no {INDEX_FILE}{hint}")


def _load_sharded(index: Path) -> Checkpoint:
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{index}: corrupt index: not valid JSON ({e})") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str)
                                                   for v in weight_map.values()):
        raise CheckpointError(f"{index}: corrupt index: expected a 'weight_map' object "
                              f"mapping tensor names to shard file names")
    shards: dict[str, SafetensorsFile] = {}
    owner: dict[str, SafetensorsFile] = {}
    for name, shard in weight_map.items():
        if shard not in shards:
            if Path(shard).name != shard or shard in (".", ".."):
                raise CheckpointError(f"{index}: shard name {shard!r} (for tensor {name!r}) "
                                      f"must be a plain file name in the same directory")
            shard_path = index.parent / shard
            if not shard_path.is_file():
                raise CheckpointError(f"{index}: names shard {shard!r} (for tensor {name!r}) "
                                      f"but {shard_path} does not exist")
            shards[shard] = SafetensorsFile(shard_path)
        f = shards[shard]
        if name not in f.infos:
            raise CheckpointError(f"{index}: tensor {name!r} is mapped to {shard!r} but that "
                                  f"shard has no such tensor")
        owner[name] = f
    return Checkpoint(list(shards.values()), owner, index)


# ------------------------------------------------------------------------------ writing

def _header_entry(name: str, a: np.ndarray, dtype_name: str | None) -> tuple[str, np.ndarray]:
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise ValueError(f"save_safetensors: invalid tensor name {name!r}")
    a = np.asarray(a)
    if dtype_name is None:
        key = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
        if key not in _NAME_OF_DTYPE:
            raise ValueError(f"save_safetensors: tensor {name!r} has dtype {a.dtype}, which "
                             f"safetensors cannot store")
        dtype_name = _NAME_OF_DTYPE[key]
    elif dtype_name not in SAFETENSORS_DTYPES:
        raise ValueError(f"save_safetensors: tensor {name!r}: unknown dtype {dtype_name!r}")
    want = SAFETENSORS_DTYPES[dtype_name]
    if a.dtype.kind != want.kind or a.dtype.itemsize != want.itemsize:
        raise ValueError(f"save_safetensors: tensor {name!r} is {a.dtype} but declared "
                         f"{dtype_name} (store BF16 as uint16 bit patterns)")
    return dtype_name, np.array(a, dtype=want, order="C", copy=None)   # keeps 0-d arrays 0-d


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                     metadata: Mapping[str, str] | None = None, *,
                     dtypes: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` to one ``.safetensors`` file that ``transformers`` and the
    ``safetensors`` library load.

    ``metadata`` (str -> str) defaults to ``{"format": "pt"}``, which ``transformers``
    expects. numpy dtypes map to their safetensors names (float32 -> F32, int8 -> I8, ...);
    ``dtypes`` overrides the name per tensor, e.g. ``{"w": "BF16"}`` for a uint16 array of
    bf16 bit patterns. Layout as the safetensors library writes it: the header padded with
    spaces to a multiple of 8 bytes, then the tensors back to back (no gaps: the library
    rejects them) ordered by element size, largest first, then by name, so every tensor
    starts at a multiple of its element size. Written to a temporary file and renamed, so a
    failure never leaves a half-written file. Returns the path.
    """
    path = Path(path)
    dtypes = dict(dtypes or {})
    unknown = set(dtypes) - set(tensors)
    if unknown:
        raise ValueError(f"save_safetensors: dtypes names unknown tensors {sorted(unknown)}")
    meta = {"format": "pt"} if metadata is None else dict(metadata)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("save_safetensors: metadata must map strings to strings")

    entries = [(name, *_header_entry(name, tensors[name], dtypes.get(name)))
               for name in tensors]
    entries.sort(key=lambda e: (-e[2].dtype.itemsize, e[0]))  # aligned without padding
    header: dict[str, object] = {"__metadata__": meta} if meta else {}
    arrays: list[np.ndarray] = []
    offset = 0
    for name, dtype_name, a in entries:
        header[name] = {"dtype": dtype_name, "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            if a.size:
                f.write(a.reshape(-1).view(np.uint8).data)
    os.replace(tmp, path)                                       # never a half-written file
    return path


def save_checkpoint(model_dir: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                    metadata: Mapping[str, str] | None = None, *,
                    max_shard_bytes: int | None = None,
                    dtypes: Mapping[str, str] | None = None) -> list[Path]:
    """Write the weights of a model directory: ``model.safetensors``, or, when
    ``max_shard_bytes`` is given and the tensors exceed it, shards
    ``model-0000i-of-0000K.safetensors`` (tensors in name order, a new shard whenever the next
    tensor would overflow; one tensor larger than the limit gets a shard of its own) plus
    ``model.safetensors.index.json``. Returns the files written."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtypes = dict(dtypes or {})
    names = sorted(tensors)
    total = sum(np.asarray(tensors[n]).nbytes for n in names)
    if max_shard_bytes is None or total <= max_shard_bytes:
        return [save_safetensors(out / SINGLE_FILE, tensors, metadata, dtypes=dtypes)]
    groups: list[list[str]] = [[]]
    size = 0
    for n in names:
        nb = np.asarray(tensors[n]).nbytes
        if groups[-1] and size + nb > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(n)
        size += nb
    k = len(groups)
    written, weight_map = [], {}
    for i, group in enumerate(groups, 1):
        shard = f"model-{i:05d}-of-{k:05d}.safetensors"
        written.append(save_safetensors(out / shard, {n: tensors[n] for n in group}, metadata,
                                        dtypes={n: dtypes[n] for n in group if n in dtypes}))
        weight_map.update({n: shard for n in group})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return written + [out / INDEX_FILE]
