"""Writing files and folders so that no reader, and no later run, ever sees half of one.

Everything mtl_keras keeps on disk is written here: run folders and SavedModels (`atomic_directory`), training
backups (a folder, then the `latest` pointer file), weight-search results and the parsed-data cache
(`atomic_file`). Both write under a temporary name beside the target and move it into place with one rename, the
step a POSIX file system does atomically: a kill at any moment leaves the previous version or the new one, never a
mix. Temporary names start with `.NAME.` so that a listing of the folder hides them and a later writer of the same
target can recognise and remove what a killed one left.

Example:

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> with atomic_file(folder / "numbers.txt", "w") as file:
...     _ = file.write("1 2 3")
>>> with atomic_directory(folder / "run") as staging:
...     _ = (staging / "config.json").write_text("{}")
...     (folder / "run").exists()  # not before the block has succeeded
False
>>> (folder / "numbers.txt").read_text(), sorted(path.name for path in folder.iterdir())
('1 2 3', ['numbers.txt', 'run'])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"  # of `atomic_file`'s temporary files: `.NAME.RANDOM.tmp`


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """Yields a file open for writing (`mode` "wb" or "w") under a temporary name beside `path`; once the block
    succeeds, its data is flushed to disk (so that a crash cannot leave a short file under the final name) and the
    file replaces `path` in one rename. A failure removes the temporary file and leaves any existing `path`
    untouched."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes a whole file: mode 'w' or 'wb', not {mode!r}.")
    path = Path(path)
    with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX,
                                     delete=False) as file:
        temporary = Path(file.name)
        try:
            yield file
            flush_to_disk(file)
        except BaseException:
            file.close()
            _discard(temporary)
            raise
    try:
        os.replace(temporary, path)
    except BaseException:
        _discard(temporary)
        raise


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = False):
    """Yields a temporary folder beside `final`, moved into place only if the block succeeds.

    A failure (an exception, a diverged run) leaves any existing `final` untouched and removes the partial folder.
    With `overwrite`, an existing `final` is replaced only once the new one is complete. What a killed writer of
    `final` left beside it is cleaned up first (`remove_stale_staging`). The folder gets the permissions of a plain
    `mkdir` under the user's umask (not `tempfile`'s owner-only 0700), so that others can read a run where the umask
    lets them (a serving container, say).
    """
    final = Path(final)
    if final.parent.is_dir():
        remove_stale_staging(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another output folder or pass overwrite=True.")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(final)


def remove_stale_staging(final: str | os.PathLike) -> list[Path]:
    """Removes the staging folders (`.NAME.partial-PID-*`) that writers of `final` killed mid-write left beside it,
    those of processes still running excepted; an earlier `final` that such a writer had moved aside
    (`.NAME.old-PID`, killed between its two renames) is put back if `final` is missing, else removed. Returns what
    was removed."""
    final = Path(final)
    removed = []
    for leftover in sorted(final.parent.iterdir()):
        for marker in (f".{final.name}.partial-", f".{final.name}.old-"):
            if not leftover.name.startswith(marker) or _is_running(leftover.name[len(marker):].split("-")[0]):
                continue
            if marker.endswith(".old-") and not final.exists():
                leftover.rename(final)
                continue
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    return removed


def flush_to_disk(file) -> None:
    """Pushes what was written to `file` through Python's and the operating system's buffers onto the disk."""
    file.flush()
    os.fsync(file.fileno())


def sync_directory(directory: str | os.PathLike) -> None:
    """Makes the renames inside `directory` durable (its entry list on disk), where the platform can open a
    directory to do so."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _discard(temporary: Path) -> None:
    """Removes a temporary file whose writing failed (a hard kill skips this: readers must ignore such leftovers, and
    their writers remove them later)."""
    temporary.unlink(missing_ok=True)


def _is_running(pid: str) -> bool:
    """Whether the process `pid` (text from a folder name; a name without one is an older writer's) still runs."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o077)  # reading the umask means setting it; put straight back
    os.umask(mask)
    return mask
