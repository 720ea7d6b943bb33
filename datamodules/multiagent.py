"""Multi-agent gridworld trajectories for Relational Forward Models (Tacchetti et al. 2018): the paper's three
games, played by scripted agents whose behaviour is written down here, so what a model must predict is known.

Games (a `size` × `size` grid; actions stay, up, down, left, right):
- `coop_nav`, cooperative navigation: as many landmarks as agents; each agent heads for the landmark that the
  greedy nearest-pair assignment gives it, so its move depends on where the other agents are.
- `stag_hunt`: one stag and two apples; an agent hunts the stag only when another agent is at least as close
  to the stag as itself (the stag needs two hunters), else it takes the nearest apple.
- `coin_game`: coins of each agent's colour; an agent takes the nearest coin of its own colour unless another
  agent is closer to that coin, in which case it takes the nearest coin of any colour.
Every agent moves at random with probability `epsilon`, so no action is fully determined.
Raw layout: {train,val,test}.jsonl, one episode per line: {"game", "entities": [[x, y, type] per entity] per
step, "actions": [action per agent] per step}. The data are generated (source `generated`); they stand in for
the paper's trajectories of trained A2C agents, so no result on them is judged against the paper.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeInt, PositiveInt, confloat, conint

from datamodules.base import ShardDataModule
from datamodules.files import DataError

Game = Literal["coop_nav", "stag_hunt", "coin_game"]
GAMES: tuple[Game, ...] = ("coop_nav", "stag_hunt", "coin_game")
TYPES = ("agent", "landmark", "stag", "apple", "coin_0", "coin_1")
MOVES = np.array([(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)])  # stay, up, down, left, right
SPLITS = ("train", "val", "test")
AGENTS = 2


def objects(game: Game) -> list[str]:
    return {
        "coop_nav": ["landmark"] * AGENTS,
        "stag_hunt": ["stag", "apple", "apple"],
        "coin_game": ["coin_0", "coin_1", "coin_0", "coin_1"],
    }[game]


def step_towards(position: np.ndarray, goal: np.ndarray) -> int:
    """The move that shortens the larger of the two distances (rows first on ties)."""
    dx, dy = goal - position
    if dx == dy == 0:
        return 0
    if abs(dy) >= abs(dx):
        return 2 if dy > 0 else 1
    return 4 if dx > 0 else 3


def distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).sum())


def goals(game: Game, agents: np.ndarray, things: np.ndarray, kinds: list[str]) -> list[np.ndarray]:
    """Each agent's target under the game's scripted policy (see the module docstring)."""
    if game == "coop_nav":  # greedy assignment: the closest (agent, landmark) pair first
        pairs = sorted((distance(a, t), i, j) for i, a in enumerate(agents) for j, t in enumerate(things))
        chosen: dict[int, int] = {}
        for _, i, j in pairs:
            if i not in chosen and j not in chosen.values():
                chosen[i] = j
        return [things[chosen[i]] for i in range(len(agents))]
    found = []
    for i, me in enumerate(agents):
        others = [a for k, a in enumerate(agents) if k != i]
        if game == "stag_hunt":
            stag = things[kinds.index("stag")]
            partner = any(distance(o, stag) <= distance(me, stag) for o in others)
            apples = [t for t, kind in zip(things, kinds) if kind == "apple"]
            found.append(stag if partner else min(apples, key=lambda t: distance(me, t)))
        else:
            mine = [t for t, kind in zip(things, kinds) if kind == f"coin_{i}"]
            target = min(mine, key=lambda t: distance(me, t))
            if any(distance(o, target) < distance(me, target) for o in others):
                target = min(things, key=lambda t: distance(me, t))
            found.append(target)
    return found


def start(rng: np.random.Generator, game: Game, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Agents and objects on distinct cells: (agent positions, object positions, object kinds)."""
    kinds = objects(game)
    cells = rng.choice(size * size, AGENTS + len(kinds), replace=False)
    positions = np.stack([cells % size, cells // size], 1)
    return positions[:AGENTS].copy(), positions[AGENTS:].copy(), kinds


def entities_of(agents: np.ndarray, things: np.ndarray, kinds: list[str]) -> list[list[int]]:
    return [[int(x), int(y), 0] for x, y in agents] + [
        [int(x), int(y), TYPES.index(k)] for (x, y), k in zip(things, kinds)
    ]


def scripted_actions(
    rng: np.random.Generator,
    game: Game,
    agents: np.ndarray,
    things: np.ndarray,
    kinds: list[str],
    epsilon: float,
) -> list[int]:
    chosen = [step_towards(a, g) for a, g in zip(agents, goals(game, agents, things, kinds))]
    return [int(rng.integers(len(MOVES))) if rng.random() < epsilon else c for c in chosen]


def advance(
    rng: np.random.Generator,
    agents: np.ndarray,
    things: np.ndarray,
    kinds: list[str],
    actions: list[int],
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Move the agents; a reached object reappears elsewhere (a fresh goal). Returns (agents, each agent's
    reward): an apple, a landmark or a coin of one's colour 1; a stag 5 to each hunter, only when all agents
    stand on it; a coin of another's colour 1 to the taker and −2 to its owner (the coin game's social
    dilemma)."""
    agents, rewards = np.clip(agents + MOVES[actions], 0, size - 1), np.zeros(AGENTS)
    for j, thing in enumerate(things):
        on = [i for i, a in enumerate(agents) if (a == thing).all()]
        if on and (kinds[j] != "stag" or len(on) == AGENTS):
            for i in on:
                owner = int(kinds[j][-1]) if kinds[j].startswith("coin") else i
                rewards[i] += 5 if kinds[j] == "stag" else 1
                rewards[owner] -= 2 if owner != i else 0
            things[j] = rng.integers(0, size, 2)
    return agents, rewards


def episode(rng: np.random.Generator, game: Game, size: int, steps: int, epsilon: float) -> dict:
    agents, things, kinds = start(rng, game, size)
    entities, actions = [], []
    for _ in range(steps):
        entities.append(entities_of(agents, things, kinds))
        actions.append(scripted_actions(rng, game, agents, things, kinds, epsilon))
        agents = advance(rng, agents, things, kinds, actions[-1], size)[0]
    return {"game": game, "size": size, "entities": entities, "actions": actions}


def generate(
    raw_dir: Path,
    seed: int = 0,
    *,
    games: tuple[Game, ...] = GAMES,
    size: conint(ge=4) = 8,
    steps: PositiveInt = 20,
    epsilon: confloat(ge=0, le=1) = 0.1,
    train: PositiveInt = 2000,
    val: PositiveInt = 200,
    test: PositiveInt = 400,
) -> None:
    """`train`/`val`/`test` episodes of each game."""
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split, count in zip(SPLITS, (train, val, test)):
        lines = (json.dumps(episode(rng, game, size, steps, epsilon)) for game in games for _ in range(count))
        (raw_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def check_layout(raw_dir: Path) -> None:
    if missing := [f"{s}.jsonl" for s in SPLITS if not (raw_dir / f"{s}.jsonl").exists()]:
        raise DataError(f"{raw_dir}: missing {', '.join(missing)} (one JSON episode per line)")


def classes(raw_dir: Path, split: str) -> list[str]:
    return ["stay", "up", "down", "left", "right"]


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    path = raw_dir / f"{split}.jsonl"
    for number, line in enumerate(path.read_text().splitlines()):
        record = json.loads(line)
        if record.get("game") not in GAMES or len(record["entities"]) != len(record["actions"]):
            yield {
                "__key__": f"{split}/{number:06d}",
                "__error__": f"{path}:{number + 1}: not an episode of {GAMES}",
            }
            continue
        yield {"__key__": f"{split}/{number:06d}", "json": record}


def features(entities: list, size: int) -> torch.Tensor:
    """(T, E, 2 + types): each entity's position scaled to [0, 1] and its type one-hot."""
    table = torch.tensor(entities, dtype=torch.float32)
    kinds = torch.nn.functional.one_hot(table[..., 2].long(), len(TYPES)).float()
    return torch.cat([table[..., :2] / (size - 1), kinds], -1)


class MultiAgent(ShardDataModule):
    """Episodes of one game: (entities (T, E, F), actions (T, agents)); agents are the first entities."""

    name = "multiagent"
    sources = ("generated",)
    in_memory = True
    synthesize = staticmethod(generate)
    samples, classes, check_layout = map(staticmethod, (samples, classes, check_layout))

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        game: Game = "stag_hunt",
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 2000,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.game = game

    def keep(self, split: str):
        return lambda s: s["json"]["game"] == self.game

    def sample(self, split: str):
        return lambda s: (
            features(s["json"]["entities"], s["json"]["size"]),
            torch.tensor(s["json"]["actions"]),
        )
