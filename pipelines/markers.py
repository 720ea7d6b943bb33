"""Generated blocks inside a hand-written file (README.md's results and preflight tables): the text between
`<!-- NAME:start -->` and `<!-- NAME:end -->` is replaced, everything else kept."""

from __future__ import annotations

from pipelines.errors import ReprozooError


class MarkersError(ReprozooError):
    """The file lacks the markers of the block to replace."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, body: str, where: str = "README.md") -> str:
    start_marker, end_marker = markers(name)
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise MarkersError(f"{where}: no {start_marker} … {end_marker} markers for the {name} table")
    return text[: start + len(start_marker)] + "\n" + body + text[end:]
