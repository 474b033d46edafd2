"""A folder of parsed arrays, so that a data file parsed once is not parsed again by the next process.

Each cache file is an uncompressed `.npz` of plain arrays (no pickles: `np.load(..., allow_pickle=False)` reads
it), named after its source file and keyed by the source's resolved path, size, modification time (ns) and the
caller's format version: a changed or touched source gets a new key, and so a fresh parse. Files are written to a
temporary name in the same folder and moved into place with `os.replace`, so a concurrent reader (a pytest-xdist
worker, a notebook kernel) sees either no cache file or a whole one. A cache file that cannot be read or fails the
caller's check is ignored with a warning and rewritten; a folder that cannot be written means parsing every time,
with one warning per folder, never a failure.

The folder is `$MTL_KERAS_CACHE` if set, else `$XDG_CACHE_HOME/mtl_keras`, else `~/.cache/mtl_keras`.

Example:

>>> import os, tempfile
>>> from pathlib import Path
>>> from unittest import mock
>>> folder = tempfile.mkdtemp()
>>> source = Path(folder, "numbers.txt")
>>> _ = source.write_text("1 2 3")
>>> parse = lambda: {"numbers": np.array(source.read_text().split(), dtype="float32")}
>>> with mock.patch.dict(os.environ, MTL_KERAS_CACHE=folder):
...     parsed = cached_arrays(source, version=1, parse=parse)  # parsed, then written
...     read_back = cached_arrays(source, version=1, parse=lambda: {})  # read from the cache file: no parse
>>> parsed["numbers"].tolist(), read_back["numbers"].tolist()
([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mtl_keras.atomic_write import TEMPORARY_SUFFIX, atomic_file

CACHE_ENV = "MTL_KERAS_CACHE"
# The key is stored in the file too, under a name no caller's array can take (callers' names have no leading dot).
KEY_ARRAY = ".key"
# A temporary file this old was left by a killed writer (a write takes about a second); younger ones may belong to a
# writer still at work in another process, so they are left alone.
STALE_TEMPORARY_SECONDS = 3600
# What reading a damaged, truncated or foreign file can raise.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)
_folders_warned_unwritable: set[Path] = set()


def cache_dir() -> Path:
    """`$MTL_KERAS_CACHE` if set, else `$XDG_CACHE_HOME/mtl_keras`, else `~/.cache/mtl_keras`."""
    if folder := os.environ.get(CACHE_ENV):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtl_keras"


def cache_key(source: Path, version: int) -> str:
    """A digest of what a parse depends on: the source's resolved path, size and mtime (ns), and `version`."""
    resolved = source.resolve()
    stat = resolved.stat()
    return _digest(f"{resolved}\0{stat.st_size}\0{stat.st_mtime_ns}\0{version}")


def cache_file(source: Path, version: int) -> Path:
    """Where the arrays parsed from `source` are cached: `<source name>.<path digest>.<key digest>.npz`.

    The path digest keeps apart two sources of the same name (the bundled file and a copy elsewhere); the key digest
    changes with the source's contents and the format version.
    """
    return _cache_file(source, cache_key(source, version))


def cached_arrays(
    source: Path,
    version: int,
    parse: Callable[[], dict[str, np.ndarray]],
    check: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of `source`: read from its cache file if there is a valid one, else `parse()`d and cached.

    Args:
        source: the file the arrays are parsed from.
        version: the caller's format version; raise it whenever `parse` changes what it returns.
        parse: returns the arrays (names without a leading dot; no object arrays).
        check: raises `ValueError` if arrays read back from a cache file are not what `parse` would return (wrong
            names, dtypes or lengths); such a file is ignored and rewritten.
    """
    key = cache_key(source, version)
    path = _cache_file(source, key)
    if path.exists():
        arrays = _read(path, key, check)
        if arrays is not None:
            return arrays
    arrays = parse()
    if _write(path, {**arrays, KEY_ARRAY: np.array(key)}):
        _remove_stale_files(path, _source_prefix(source))
    return arrays


def _read(path: Path, key: str, check: Callable[[dict[str, np.ndarray]], None] | None) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None (with a warning) if it cannot be read or does not match."""
    try:
        # Our own handle, closed even when np.load fails on a damaged archive (it would leave its own open).
        with open(path, "rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds one array, not an .npz archive")
            arrays = {name: archive[name] for name in archive.files}
        stored_key = arrays.pop(KEY_ARRAY)
        if stored_key.shape != () or stored_key.item() != key:
            raise ValueError("it was written for another version of the source file")
        if check is not None:
            check(arrays)
    except _UNREADABLE as error:
        warnings.warn(f"Ignoring the cache file {path} ({type(error).__name__}: {error}); parsing the source again "
                      f"and rewriting it.", stacklevel=3)
        return None
    return arrays


def _write(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Writes `arrays` to `path` atomically; False (with one warning per folder) if the folder is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:  # a concurrent reader sees no cache file or a whole one
            np.savez(handle, **arrays)
        return True
    except OSError as error:
        if path.parent not in _folders_warned_unwritable:
            _folders_warned_unwritable.add(path.parent)
            warnings.warn(f"Cannot write the cache folder {path.parent} ({type(error).__name__}: {error}); data "
                          f"will be parsed every time. Point {CACHE_ENV} at a writable folder.", stacklevel=3)
        return False


def _remove_stale_files(path: Path, prefix: str) -> None:
    """Removes the other cache files of the same source (older versions of it, whose name starts with `prefix`) and
    temporary files left by killed writers; a file that another process removed first, or that cannot be removed,
    is skipped."""
    for other in path.parent.glob(f"{prefix}*.npz"):
        if other != path:
            _unlink_if(other, lambda _: True)
    for temporary in path.parent.glob(f".{prefix}*{TEMPORARY_SUFFIX}"):
        _unlink_if(temporary, lambda stat: time.time() - stat.st_mtime > STALE_TEMPORARY_SECONDS)


def _unlink_if(file: Path, condition: Callable[[os.stat_result], bool]) -> None:
    try:
        if condition(file.stat()):
            file.unlink()
    except OSError:
        pass


def _cache_file(source: Path, key: str) -> Path:
    return cache_dir() / f"{_source_prefix(source)}{key[:16]}.npz"


def _source_prefix(source: Path) -> str:
    return f"{source.name}.{_digest(str(source.resolve()))[:12]}."


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
