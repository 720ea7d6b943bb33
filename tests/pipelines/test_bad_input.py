"""Damaged files the project itself wrote, met by the CLI: one line naming the file and what to do, exit 2, no
traceback, and nothing else touched."""

import pytest

from tests.helpers import cli, tiny_params, write_params

DAMAGED = {
    "data/shards/omniglot/meta.json": (["train", "protonets"], "run `reprozoo shard omniglot` again"),
    "metrics/protonets.json": (["report"], "run `reprozoo evaluate protonets` again"),
    "data/raw/omniglot/source.json": (["shard", "omniglot"], "run `reprozoo fetch omniglot` again"),
}


@pytest.mark.parametrize("damaged", list(DAMAGED))
def test_a_truncated_json_file_is_named_with_its_remedy(tmp_path, damaged):
    write_params(tmp_path, tiny_params())
    path = tmp_path / damaged
    path.parent.mkdir(parents=True)
    path.write_text('{"splits": {"train": ')  # cut mid-write
    args, remedy = DAMAGED[damaged]
    result = cli(tmp_path, *args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path.relative_to(tmp_path)}: not valid JSON" in result.stderr and remedy in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == '{"splits": {"train": '


def test_a_sweep_without_shards_stops_before_ray_starts(tmp_path):
    """A fresh clone's `reprozoo tune` used to start Ray and dump every trial's traceback."""
    import ray

    from datamodules.files import DataError
    from pipelines.config import load_params
    from pipelines.tune import run_sweep
    from tests.helpers import chdir

    write_params(tmp_path, tiny_params())
    with (
        chdir(tmp_path),
        pytest.raises(DataError, match="meta.json: missing; run `reprozoo shard omniglot` first"),
    ):
        run_sweep(load_params(), "protonets")
    assert not ray.is_initialized()
