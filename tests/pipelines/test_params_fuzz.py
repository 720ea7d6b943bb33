"""params.yaml and recipes/ fuzzed with hypothesis: any wrong type, out-of-range value or unknown key anywhere
in the shipped files either still loads or fails with ParamsError naming the file and the dotted path; never a
stack trace from elsewhere."""

import json
import re
from functools import reduce
from operator import getitem

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import load_params
from pipelines.errors import ParamsError, UnknownKey
from tests.helpers import repository_params, split_params, write_params

# Through JSON: the files' YAML anchors load as one shared mapping, which a mutation would change in both
# places.
SHIPPED = json.loads(json.dumps(repository_params()))


def key_paths(tree: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key of the nested mappings, as a path (lists are values, not descended)."""
    return [
        p
        for key, value in tree.items()
        for p in [(*prefix, key), *(key_paths(value, (*prefix, key)) if isinstance(value, dict) else [])]
    ]


PATHS = key_paths(SHIPPED)
MAPPINGS = [p for p in PATHS if isinstance(reduce(getitem, p, SHIPPED), dict)]
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), st.integers(-3, 3), max_size=2),
)
NAMED = re.compile(r"^\S+/(params\.yaml|recipes/\w+\.yaml): ([\w.\-]+): ")


def written_in(params: dict, path: tuple) -> str:
    """The file `write_params` writes the key at `path` to: the first of `split_params`' files holding it."""

    def holds(tree: object, keys: tuple) -> bool:
        return not keys or isinstance(tree, dict) and keys[0] in tree and holds(tree[keys[0]], keys[1:])

    return next(str(file) for file, tree in split_params(params).items() if holds(tree, path))


def assert_named(error: Exception, where: str, file: str) -> None:
    lines = str(error).split("\n")  # a value may hold other line breaks
    found = [NAMED.match(line) for line in lines]
    assert all(found), lines  # every problem starts with its file and dotted path
    reported = [match[2] for match in found]
    assert any(match[1] == file for match in found), (file, lines)
    assert any(
        where.startswith(r) or r.startswith(where) or where in line for r, line in zip(reported, lines)
    ), (where, lines)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=WRONG)
def test_a_value_replaced_anywhere_loads_or_names_its_path(tmp_path, path, value):
    params = json.loads(json.dumps(SHIPPED))
    reduce(getitem, path[:-1], params)[path[-1]] = value
    write_params(tmp_path, params)
    try:
        load_params(tmp_path / "params.yaml")
    except (ParamsError, UnknownKey) as error:
        assert_named(error, ".".join(map(str, path)), written_in(params, path))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(MAPPINGS), value=WRONG)
def test_an_unknown_key_anywhere_is_named(tmp_path, path, value):
    params = json.loads(json.dumps(SHIPPED))
    reduce(getitem, path, params)["zz_unknown"] = value
    write_params(tmp_path, params)
    try:
        load_params(tmp_path / "params.yaml")
    except (ParamsError, UnknownKey) as error:
        assert_named(
            error, ".".join(map(str, (*path, "zz_unknown"))), written_in(params, (*path, "zz_unknown"))
        )
    else:
        raise AssertionError(f"{'.'.join(map(str, path))}.zz_unknown was accepted")
