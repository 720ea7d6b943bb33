"""Validation with messages a person can act on: pydantic's errors turned into one line per bad place, naming
the dotted path in the user's file, the bad value and what is allowed; and the keyword-only signature of a
paper's or dataset's class as a pydantic model, so params are checked against the code they configure."""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from pipelines.errors import ParamsError

if TYPE_CHECKING:
    from pipelines.config import Params


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The keys allowed at `loc` inside `model`, to list beside an unknown key."""
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _real_loc(error: dict, values: Any) -> tuple:
    """The error's location as keys of the user's file: pydantic also puts a union member's tag in it
    (`constrained-int`, `literal['auto']`, `[key]`), which names nothing a user wrote."""
    loc, kept, data = error["loc"], [], values
    for part in loc:
        if (
            isinstance(data, dict)
            and part in data
            or isinstance(data, list)
            and isinstance(part, int)
            and part < len(data)
        ):
            kept.append(part)
            data = data[part]
        elif error["type"] == "missing" and part == loc[-1]:
            kept.append(part)
    return tuple(kept)


def _describe(errors: list[dict], where: str, allowed: list[str]) -> str:
    """One line per place: a union's members' complaints joined ("a valid integer or 'auto'")."""
    errors = [e for e in errors if "[key]" in e["loc"]] or errors  # a bad key: its value's errors add nothing
    first = errors[0]
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key" + (f"; allowed: {', '.join(sorted(allowed))}" if allowed else "")
    if first["type"] == "missing":
        return f"{where}: required"
    wanted = " or ".join(dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in errors))
    return f"{where}: {wanted}, got {first['input']!r}"


def _dotted(prefix: str, loc: tuple) -> str:
    return ".".join(part for part in (prefix, *map(str, loc)) if part)


def validate(model: type[BaseModel], values: dict, prefix: typing.Callable[[str], str]) -> Any:
    """Validate `values` against `model`; `prefix(first key)` gives the dotted path the key came from.

    Strictly, as JSON: `true` is no number and "3" no integer (lax mode would take them as 1 and 3), while a
    YAML list still fills a tuple and a string a path, as JSON allows."""
    try:
        return model.model_validate_json(json.dumps(values, default=str), strict=True)
    except ValidationError as error:
        places: dict[tuple, list[dict]] = {}
        for e in error.errors():
            places.setdefault(_real_loc(e, values), []).append(e)
        lines = [
            _describe(
                errors,
                _dotted(prefix(str(loc[0])) if loc else prefix(""), loc),
                _fields_at(model, errors[0]["loc"][:-1]),
            )
            for loc, errors in places.items()
        ]
        raise ParamsError("\n".join(lines)) from None


@functools.cache  # one per callable: pydantic builds a model's validator in 0.5 ms, and params.yaml needs 161
def keyword_model(fn: typing.Callable) -> type[BaseModel]:
    """A pydantic model of the keyword-only arguments of `fn`, with their annotations and defaults."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = {
        name: (hints.get(name, Any), p.default if p.default is not p.empty else ...)
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    return create_model(f"{fn.__qualname__}Kwargs", __config__=ConfigDict(extra="forbid"), **fields)


def check_kwargs(fn: typing.Callable, values: dict, prefix: typing.Callable[[str], str]) -> dict[str, Any]:
    """The values given, coerced and range-checked; the defaults stay in the signature of `fn`."""
    return validate(keyword_model(fn), values, prefix).model_dump(exclude_unset=True)


RANGES = ("uniform", "loguniform", "randint")


def check_space(params: Params, key: str) -> None:
    """Each distribution is well formed, and its extreme values (every choice) pass the recipe's own checks,
    so a sweep cannot sample a value the paper's signature rejects only after hours of other trials."""
    for dotted, distribution in params.papers[key].tune.space.items():
        where = f"papers.{key}.tune.space.{dotted}"
        if len(distribution) != 1:
            raise ParamsError(
                f"{where}: expected exactly one of choice, grid, {', '.join(RANGES)}; got "
                f"{sorted(distribution) or 'none'}"
            )
        ((kind, values),) = distribution.items()
        if kind in RANGES:
            if (
                len(values) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                or values[0] >= values[1]
                or (kind == "loguniform" and values[0] <= 0)
            ):
                raise ParamsError(
                    f"{where}.{kind}: expected [low, high] numbers with low < high"
                    f"{' and low > 0' if kind == 'loguniform' else ''}, got {values!r}"
                )
            candidates = [values[0], values[1] - 1 if kind == "randint" else values[1]]
        elif not values:
            raise ParamsError(f"{where}.{kind}: expected a non-empty list of values")
        else:
            candidates = values
        for value in candidates:
            params.recipe(key, overrides={dotted: value})


class UniqueKeys(yaml.CSafeLoader):  # libyaml's parser, as in PyYAML's wheels: ~9 times faster
    """YAML's safe loader, except that a key given twice in one mapping is an error naming it and both lines
    (PyYAML keeps the last one silently, so an edit lower in the file would quietly win), and that `1e-5` is
    a number, as YAML 1.2 and DVC read it (PyYAML's YAML 1.1 wants `1.0e-5`; `dvc exp run -S lr=1e-5`
    writes `1e-05`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping; keys written beside it override its keys by design
            line = key_node.start_mark.line + 1
            if key_node.value in first:
                where = f"lines {first[key_node.value]} and {line}"
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} given twice, on {where}", key_node.start_mark
                )
            first[key_node.value] = line
        return super().construct_mapping(node, deep)


UniqueKeys.add_implicit_resolver(  # YAML 1.2's exponent without a dot; the subclass gets its own table
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)
