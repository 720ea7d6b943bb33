"""fetch@<dataset>: data/raw/<dataset>/ from the configured source (synthetic replica, download, local
copy)."""

from __future__ import annotations

from pathlib import Path

from datamodules import DATASETS
from datamodules.files import DataError, atomic_dir, copy_tree, write_source
from pipelines import paths
from pipelines.config import Params


def fetch_dataset(params: Params, name: str) -> Path:
    """Replace data/raw/<name> with a fresh copy; an interrupted fetch leaves the previous one intact."""
    settings, cls, target = params.dataset(name), DATASETS[name], paths.raw(name)
    with atomic_dir(target) as scratch:
        if settings.source in ("synthetic", "generated"):  # a replica, or a task that *is* its generator
            cls.synthesize(scratch, settings.seed, **settings.synthetic)
        elif settings.source == "download":
            cls.download(scratch, paths.downloads(name))
        elif settings.source == "bundled":
            cls.bundled(scratch)
        else:
            if not settings.path.is_dir():
                raise DataError(
                    f"datasets.{name}.path: {settings.path} does not exist or is not a folder; "
                    f"expected a copy of {name} in its official layout"
                )
            if hasattr(
                cls, "import_local"
            ):  # a raw layout derived from the user's files (frames from videos)
                cls.import_local(settings.path, scratch)
            else:  # a copy in the official layout, mirrored
                cls.check_layout(settings.path)
                copy_tree(settings.path, scratch)
        write_source(
            scratch,
            {
                "source": settings.source,
                "seed": settings.seed,
                "synthetic": settings.synthetic,
                "path": str(settings.path) if settings.path else None,
            },
        )
    return target
