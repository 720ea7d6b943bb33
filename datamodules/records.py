"""What a shard's records must be when they are read back: decoded by the dataset's keys, never unpickled;
a record or a shard that is not right is named by its file and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import webdataset as wds

from datamodules.files import DataError


def unreadable_shard(error: Exception) -> bool:
    """webdataset's handler for a shard it cannot read (a truncated tar, a corrupt header): name the file."""
    url = next(
        (a for a in reversed(error.args) if isinstance(a, str)), "a shard"
    )  # webdataset appends the url
    raise DataError(
        f"{url}: unreadable shard ({error.args[0] if error.args else type(error).__name__}); "
        f"re-run `reprozoo shard {Path(url).parent.name}`"
    ) from error


class Record(dict):
    """A decoded shard record: a member it lacks (a record the shard stage never wrote, e.g. a pickle slipped
    into a shard, which stays bytes) is named by shard, key and what the record holds, not a KeyError."""

    def __missing__(self, member: str):
        url, key = self.get("__url__", "a shard"), self.get("__key__")
        held = ", ".join(f"{key}.{m}" for m in self if not m.startswith("__")) or "nothing"
        raise DataError(
            f"{url}: record {key!r} has no {member!r} member (it holds {held}): not a record the shard stage "
            f"wrote; re-run `reprozoo shard {Path(url).parent.name}`"
        )


def decoding(image_mode: str, keys: tuple[str, ...]) -> Callable[[dict], dict]:
    """webdataset's decoder for `keys` (other members stay bytes: a .pyd/.pth/.pickle is never unpickled),
    with a record that does not decode (a truncated JPEG) named by shard and key instead of a bare
    DecodingError."""
    decode = wds.autodecode.Decoder([wds.autodecode.imagehandler(image_mode)], only=list(keys))

    def decoded(sample: dict) -> dict:
        url = sample.get("__url__", "a shard")
        try:
            return Record(decode(sample))
        except Exception as error:
            cause = error.__cause__ or error.__context__ or error
            raise DataError(
                f"{url}: record {sample.get('__key__')!r} does not decode ({cause}); "
                f"re-run `reprozoo shard {Path(url).parent.name}` from an intact raw copy"
            ) from None

    return decoded
