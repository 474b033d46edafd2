"""The parsed-column cache of the census files: exact, keyed by the source file, atomic, and never a failure.

Each test caches into its own folder (MTL_KERAS_CACHE) and, but for one, reads a tiny census-format file it writes:
the bundled files take seconds to parse.
"""

import lzma
import os
import time
import warnings

import numpy as np
import pytest

from mtl_keras import atomic_write
from mtl_keras.datasets import cache, census
from mtl_keras.datasets.census import CACHE_FORMAT_VERSION, CENSUS_COLUMNS, FLOAT_COLUMNS, read_census


@pytest.fixture(autouse=True)
def cache_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MTL_KERAS_CACHE", str(folder))
    census._read_columns.cache_clear()  # nothing read before this test is reused by it, nor the other way round
    yield folder
    census._read_columns.cache_clear()


@pytest.fixture
def parses(monkeypatch):
    """The files `_parse_census_file` is called on, in order: a read from the cache adds none."""
    calls = []
    parse = census._parse_census_file
    monkeypatch.setattr(census, "_parse_census_file", lambda file: calls.append(file) or parse(file))
    return calls


def tiny_rows(rows=7, shift=0):
    """Census-format rows: numbers in the float columns; a few distinct strings per string column, non-ASCII and
    empty values among them."""
    def value(name, row):
        if name in FLOAT_COLUMNS:
            return f"{(row + shift) * 1.25:g}"
        return ["Not in universe", "Françoise", "", f"{name} {shift}"][(row + len(name)) % 4]

    return [[value(name, row) for name in CENSUS_COLUMNS] for row in range(rows)]


def write_census(folder, rows, part="test"):
    folder.mkdir(exist_ok=True)
    file = folder / f"census_income_{part}.tsv.xz"
    lines = ["\t".join(CENSUS_COLUMNS)] + ["\t".join(row) for row in rows]
    file.write_bytes(lzma.compress(("\n".join(lines) + "\n").encode("utf-8")))
    return file


def assert_columns_are(columns, rows):
    """`columns` holds exactly `rows`, as `read_census` promises: float32 or object arrays of str, read-only, one str
    object per distinct value."""
    assert list(columns) == list(CENSUS_COLUMNS)
    for index, name in enumerate(CENSUS_COLUMNS):
        values = columns[name]
        assert not values.flags.writeable
        expected = [row[index] for row in rows]
        if name in FLOAT_COLUMNS:
            assert values.dtype == np.float32
            assert np.array_equal(values, np.array(expected, dtype=np.float32))
        else:
            assert values.dtype == object and all(type(value) is str for value in values)
            assert values.tolist() == expected
            assert len({id(value) for value in values}) == len(set(expected))


def cache_files(folder):
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_cached_read_equals_a_fresh_parse_without_parsing(tmp_path, cache_folder, parses):
    rows = tiny_rows()
    file = write_census(tmp_path / "data", rows)
    assert_columns_are(read_census("test", tmp_path / "data"), rows)
    assert cache_files(cache_folder) == [cache.cache_file(file, CACHE_FORMAT_VERSION).name]
    census._read_columns.cache_clear()  # as in a new process
    assert_columns_are(read_census("test", tmp_path / "data"), rows)
    assert parses == [file.resolve()]  # the second read came from the cache file
    with np.load(cache.cache_file(file, CACHE_FORMAT_VERSION), allow_pickle=False) as archive:
        assert archive["age"].dtype == np.float32 and archive["education.values"].dtype.kind == "U"


def test_the_bundled_test_file_reads_back_identically():
    parsed = read_census("test")
    census._read_columns.cache_clear()
    started = time.perf_counter()
    cached = read_census("test")
    assert time.perf_counter() - started < 5  # about 0.1 s; a parse takes 5 s or more
    for name in CENSUS_COLUMNS:
        assert cached[name].dtype == parsed[name].dtype and np.array_equal(cached[name], parsed[name]), name
    assert cached["income"] is not parsed["income"]


def test_a_touched_or_changed_file_is_parsed_again(tmp_path, cache_folder, parses):
    file = write_census(tmp_path / "data", tiny_rows())
    read_census("test", tmp_path / "data")
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes, one second newer
    assert_columns_are(read_census("test", tmp_path / "data"), tiny_rows())
    changed = tiny_rows(rows=9, shift=3)
    write_census(tmp_path / "data", changed)
    assert_columns_are(read_census("test", tmp_path / "data"), changed)
    assert len(parses) == 3
    # Each new version replaced the one before: one cache file per source.
    assert cache_files(cache_folder) == [cache.cache_file(file, CACHE_FORMAT_VERSION).name]


def rewritten(path, change):
    """Rewrites a cache file with `change` applied to its arrays (its key kept: it passes for the right version)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez(path, **arrays)


def one_array(path):
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: path.write_bytes(b"not a zip file"), "pickled"),  # np.load's guess: neither .npy nor .npz
        (one_array, "not an .npz archive"),
        (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), "BadZipFile"),
        (lambda path: rewritten(path, lambda arrays: arrays.update({"sex.codes": arrays["sex.codes"][:-1]})),
         "sex: expected 7 unsigned codes"),
        (lambda path: rewritten(path, lambda arrays: arrays.update({"age": arrays["age"].astype("float64")})),
         "age: expected 7 float32 values, got 7 float64"),
        (lambda path: rewritten(path, lambda arrays: arrays.pop("sex.values")), "expected the arrays"),
    ],
    ids=["not-a-zip", "one-array", "truncated", "short-column", "wrong-dtype", "missing-column"],
)
def test_a_bad_cache_file_is_parsed_again_with_one_warning_and_rewritten(tmp_path, parses, damage, message):
    rows = tiny_rows()
    file = write_census(tmp_path / "data", rows)
    read_census("test", tmp_path / "data")
    path = cache.cache_file(file, CACHE_FORMAT_VERSION)
    damage(path)
    census._read_columns.cache_clear()
    with pytest.warns(UserWarning, match="Ignoring the cache file") as caught:
        assert_columns_are(read_census("test", tmp_path / "data"), rows)
    assert len(caught) == 1 and message in str(caught[0].message)
    census._read_columns.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file reads without a warning
        assert_columns_are(read_census("test", tmp_path / "data"), rows)
    assert len(parses) == 2


def test_a_cache_file_of_another_source_version_is_not_used(tmp_path, parses):
    file = write_census(tmp_path / "data", tiny_rows())
    read_census("test", tmp_path / "data")
    key = cache.cache_key(file, CACHE_FORMAT_VERSION)
    path = cache.cache_file(file, CACHE_FORMAT_VERSION)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    np.savez(path, **{**arrays, cache.KEY_ARRAY: np.array(key[::-1])})  # as if written for another mtime
    census._read_columns.cache_clear()
    with pytest.warns(UserWarning, match="another version of the source file"):
        read_census("test", tmp_path / "data")
    assert len(parses) == 2


def test_an_unwritable_cache_folder_parses_every_time_with_one_warning(tmp_path, monkeypatch, parses):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("MTL_KERAS_CACHE", str(blocker / "cache"))  # a folder inside a file: mkdir fails, even as root
    rows = tiny_rows()
    write_census(tmp_path / "data", rows, part="train")
    write_census(tmp_path / "data", rows, part="test")
    with pytest.warns(UserWarning, match="Cannot write the cache folder") as caught:
        for part in ("train", "test", "train"):
            assert_columns_are(read_census(part, tmp_path / "data"), rows)
            census._read_columns.cache_clear()
    assert len([warning for warning in caught if "Cannot write" in str(warning.message)]) == 1
    assert len(parses) == 3
    assert blocker.read_text() == ""


def test_the_final_name_only_ever_holds_a_whole_file(tmp_path, cache_folder, monkeypatch):
    file = write_census(tmp_path / "data", tiny_rows())
    final = cache.cache_file(file, CACHE_FORMAT_VERSION)
    replace = os.replace
    moves = []

    def checked_replace(source, destination):
        # At the moment of the rename the final name does not exist yet, and what moves there is a whole archive.
        assert not os.path.exists(destination)
        with np.load(source, allow_pickle=False) as archive:
            moves.append((os.path.dirname(source), str(destination), len(archive.files)))
        replace(source, destination)

    monkeypatch.setattr(os, "replace", checked_replace)
    read_census("test", tmp_path / "data")
    assert moves == [(str(cache_folder), str(final), len(FLOAT_COLUMNS) + 2 * len(census.STRING_COLUMNS) + 1)]
    assert cache_files(cache_folder) == [final.name]  # no temporary file left behind


def test_a_killed_writers_temporary_file_is_never_read_and_is_removed_once_stale(tmp_path, cache_folder, monkeypatch):
    rows = tiny_rows()
    file = write_census(tmp_path / "data", rows)
    final = cache.cache_file(file, CACHE_FORMAT_VERSION)

    def killed_mid_write(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(cache.np, "savez", killed_mid_write)
        patch.setattr(atomic_write, "_discard", lambda temporary: None)  # a hard kill: nothing cleans up
        read_census("test", tmp_path / "data")
    (left_behind,) = cache_folder.iterdir()
    assert left_behind.name.startswith(f".{final.name}.") and left_behind.name.endswith(".tmp")
    young = cache_folder / f".{final.name}.of_a_live_writer.tmp"  # another process may still be writing this one
    young.write_bytes(b"PK\x03\x04")
    an_hour_ago = time.time() - cache.STALE_TEMPORARY_SECONDS - 60
    os.utime(left_behind, (an_hour_ago, an_hour_ago))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither temporary file is read: no warning about a bad cache file
        assert_columns_are(read_census("test", tmp_path / "data"), rows)
    assert cache_files(cache_folder) == sorted([young.name, final.name])


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_KERAS_CACHE", str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    monkeypatch.delenv("MTL_KERAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "mtl_keras"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mtl_keras"


def test_a_row_with_a_missing_value_names_its_row(tmp_path):
    rows = tiny_rows()
    rows[4] = rows[4][:-1]
    write_census(tmp_path / "data", rows)
    with pytest.raises(ValueError, match="expected 42 values per row, got 41 in data row 5"):
        read_census("test", tmp_path / "data")
