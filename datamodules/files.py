"""File plumbing every dataset shares: atomic writes, resumable checksummed downloads, safe extraction.

Nothing here knows about a dataset. A stage that is killed midway must never leave something a later
stage would read as complete, so every output is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm


class DataError(Exception):
    """Bad or missing data: the message names the file or record and what was expected."""


# A full disk, a file-size limit or a quota: what a writer meets when storage runs out.
OUT_OF_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def out_of_space(error: BaseException) -> bool:
    """An OSError of OUT_OF_SPACE, or torch's stream writer saying the same ("file write failed")."""
    if isinstance(error, OSError):
        return error.errno in OUT_OF_SPACE
    return isinstance(error, RuntimeError) and "file write failed" in str(error)


def storage_error(path: Path, error: BaseException) -> DataError:
    reason = error.strerror if isinstance(error, OSError) else "the write failed (disk full?)"
    return DataError(
        f"{path}: {reason} while writing it; nothing already produced was changed (it is written under a "
        f"temporary name and renamed only when whole); free space and run again"
    )


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, error) if out_of_space(error) else error from None
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces `target` only if the block finishes without an error."""
    scratch = target.with_name(f"{target.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        yield scratch
    except BaseException as error:
        shutil.rmtree(scratch, ignore_errors=True)
        if out_of_space(error):
            raise storage_error(target, error) from None
        raise
    old = target.with_name(f"{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(scratch, target)
    shutil.rmtree(old, ignore_errors=True)


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def copy_with_progress(source, out, *, total: int | None, name: str, chunk: int = 1 << 20) -> None:
    """`shutil.copyfileobj` with a progress bar in bytes, refreshed at most once a second."""
    with tqdm(total=total, initial=out.tell(), unit="B", unit_scale=True, desc=name, mininterval=1.0) as bar:
        while block := source.read(chunk):
            out.write(block)
            bar.update(len(block))


def download(url: str, dest: Path, md5: str | None) -> Path:
    """Fetch `url` into `dest`, resuming a partial `dest.part` with an HTTP Range request, then verify md5."""
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with (
            urllib.request.urlopen(request, timeout=60) as response,
            part.open("ab" if offset else "wb") as out,
        ):
            if offset and response.status != 206:  # the server ignored Range: start over
                out.truncate(0)
                out.seek(0)
            expected = out.tell() + int(response.headers.get("Content-Length", -1))
            copy_with_progress(
                response, out, total=expected if expected > out.tell() else None, name=dest.name
            )
            # A connection dropped mid-body reads as a short end of file, not an error: compare with the
            # length.
            if response.headers.get("Content-Length") is not None and out.tell() < expected:
                raise http.client.IncompleteRead(b"", expected - out.tell())
    except (OSError, http.client.HTTPException) as error:
        got = part.stat().st_size if part.exists() else 0
        raise DataError(
            f"{url}: download failed after {got} bytes ({error!r}); {part} is kept and the next run "
            f"resumes it"
        ) from None
    if md5 is not None and (got := md5sum(part)) != md5:
        part.unlink()
        raise DataError(f"{url}: checksum mismatch (md5 {got}, expected {md5}); the partial file was deleted")
    os.replace(part, dest)
    return dest


def _inside(root: Path, member: str) -> bool:
    return (root / member).resolve().is_relative_to(root.resolve())


def extract(archive: Path, target: Path) -> None:
    """Unpack a .zip or a tar into `target`, refusing members that would land outside it."""
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not _inside(target, name):
                    raise DataError(f"{archive}: member {name!r} would be written outside {target}")
            zf.extractall(target)
        return
    try:
        with tarfile.open(archive) as tf:
            # Refused, as in a zip: the "data" filter (PEP 706) would quietly strip a leading `/`.
            for member in tf.getmembers():
                if member.name.startswith("/") or not _inside(target, member.name):
                    raise DataError(f"{archive}: member {member.name!r} would be written outside {target}")
            # The filter still rejects links that leave the target and device files.
            tf.extractall(target, filter="data")
    except (tarfile.FilterError, tarfile.ReadError) as error:
        raise DataError(f"{archive}: refused to extract: {error}") from None


def links_leaving(source: Path) -> Iterator[tuple[Path, Path]]:
    """Every symlink under `source` whose target lies outside it, with where it points."""
    root = source.resolve()
    for folder, names, files in os.walk(source):
        for name in [*names, *files]:
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                yield path, path.resolve()


def copy_tree(source: Path, target: Path) -> None:
    """Mirror a user's local copy: hard links where the filesystem allows, copies otherwise. A link that
    leaves the copy is refused, as archive extraction refuses a member that would: followed, it would carry
    a file from elsewhere on the machine into DVC's cache (and `dvc push` would upload it)."""
    for link, points_to in links_leaving(Path(source)):
        raise DataError(
            f"{link}: a symlink to {points_to}, outside the local copy {source}; copy that file into the "
            f"folder (or remove the link): links may only point inside the copy"
        )

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, dirs_exist_ok=True)


SOURCE_RECORD = "source.json"  # how a raw copy was made; the shard stage carries it into meta.json


def read_json(path: Path, remedy: str) -> Any:
    """A JSON file the project wrote, or an error naming it and what to do when it is damaged (a truncated or
    hand-edited file), instead of json's traceback."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); {remedy}") from None


def write_source(raw_dir: Path, record: dict) -> None:
    (raw_dir / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def read_source(raw_dir: Path) -> dict:
    path = raw_dir / SOURCE_RECORD
    if not path.exists():
        raise DataError(f"{raw_dir}: not fetched; run `reprozoo fetch {raw_dir.name}` first")
    return read_json(path, f"run `reprozoo fetch {raw_dir.name}` again")


# Set by `reprozoo preflight --random-weights` in its own child process: a step costs the same whatever the
# weights' values, so a recipe can be sized on a node that has not got its weight files yet.
RANDOM_WEIGHTS = {"on": False}


def pretrained(weights):
    """`weights` (a torchvision WeightsEnum member) once its file is in torch hub's cache,
    `$TORCH_HOME/hub/checkpoints/<file>` (by default ~/.cache/torch), fetched there when online.
    torchvision then loads it from the cache and checks it against the hash in its name. Offline without the
    file: an error naming the file, its URL and the setting, instead of urllib's traceback. None (the same
    architecture, randomly initialised) while sizing with RANDOM_WEIGHTS."""
    import torch.hub

    if RANDOM_WEIGHTS["on"]:
        return None

    name = Path(urllib.parse.urlparse(weights.url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        found = torch.hub.HASH_REGEX.search(name)
        try:
            torch.hub.download_url_to_file(
                weights.url, str(path), found.group(1) if found else None, progress=False
            )
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a hash mismatch a RuntimeError
            raise DataError(
                f"{path}: the pretrained weights {type(weights).__name__}.{weights.name} are not there and "
                f"{weights.url} could not be fetched ({error}); copy that file there, or set TORCH_HOME to a "
                f"folder whose hub/checkpoints/ holds it (or train with pretrained: false)"
            ) from None
    return weights
