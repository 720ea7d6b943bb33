"""Relational Forward Modeling of Multi-Agent Systems (Tacchetti, Song, Mediano, Zambaldi, Rabinowitz,
Graepel, Botvinick & Battaglia, ICLR 2019, arXiv:1809.11044).

Paper:    an RFM predicts every agent's next action from the scene as a graph (entities as nodes, every
          ordered pair as an edge, a global): a graph-network encoder, a recurrent graph-network core whose
          edge, node and global updates are GRUs carried across time, and a graph-network decoder read out at
          the agents' nodes. Baselines: a feed-forward MLP and a recurrent model without relations (an LSTM
          over the flattened scene). Edge activations measure how much one entity drives another's action.
Faithful: encoder → GN core (edge GRU on [e_ij, v_i, v_j, u], node GRU on [v_i, Σ_j e_ji, u], global GRU on
          [mean v, mean e, u]) → decoder on the agent nodes, shared across entities, so permuting agents
          permutes the predictions; the two baselines trained side by side on the same batches; accuracy of
          the next-action prediction at every step of held-out episodes; the agent-to-agent edge norms as a
          figure. The second experiment (`agents: true`): after `rfm_steps` of that training, the RFM is
          frozen and two A2C learners play agent 0 beside a scripted partner, one given the RFM's prediction
          of the partner's next action, the other the same input with zeros there; both learn on the same
          seeds, and their returns are the reward curves and the test returns.
Differs:  the trajectories come from the scripted agents of datamodules/multiagent.py, not trained A2C agents
          (and the partner of the learners is scripted). The paper reports no numeric table, so there is no
          claim to judge; the metrics are the three models' accuracies and, with agents, the two learners'
          returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, confloat, conint
from torch import Tensor, nn

from datamodules.multiagent import AGENTS, Game, advance, entities_of, features, scripted_actions, start
from lightning_modules.common import SameStepForValAndTest, curves_figure, log_means
from lightning_modules.paper import Claim, Mode, Paper
from lightning_modules.relational_nets import ACTIONS, FlatLSTM, FlatMLP, RFMNet, mlp

PAPER = Paper(
    key="relational_forward_model",
    title="Relational Forward Modeling of Multi-Agent Systems",
    authors="Tacchetti, Song, Mediano, Zambaldi, Rabinowitz, Graepel, Botvinick, Battaglia",
    year=2018,
    arxiv="1809.11044",
    dataset="multiagent",
    claims=(  # the paper's comparisons, as margins that must not be negative (§4, Fig. 3 and 5; verify)
        Claim("test/acc_rfm_minus_mlp", claimed=0.0, source="§4.2, Fig. 3", tolerance=0.0, verified=False),
        Claim("test/acc_rfm_minus_lstm", claimed=0.0, source="§4.2, Fig. 3", tolerance=0.0, verified=False),
        Claim(
            "test/return_with_minus_without_rfm",
            claimed=0.0,
            source="§4.3, Fig. 5",
            tolerance=0.0,
            verified=False,
        ),
    ),
    dataset_is_the_papers=False,
)


class GridGames:
    """`count` copies of one game in lockstep: agent 0 is the learner, the others play the scripted policy."""

    def __init__(self, game: Game, count: int, size: int, steps: int, epsilon: float, seed: int):
        self.game, self.size, self.steps, self.epsilon = game, size, steps, epsilon
        self.rng = np.random.default_rng(seed)
        self.states = [start(self.rng, game, size) for _ in range(count)]
        self.t, self.returns, self.finished = 0, np.zeros(count), []
        self.rfm_state: tuple | None = None  # the RFM's recurrent state over the current episodes

    def observe(self) -> Tensor:
        """(count, E, F) scene features, as the RFM was trained on."""
        return torch.stack([features([entities_of(*state)], self.size)[0] for state in self.states])

    def step(self, learner: list[int]) -> tuple[Tensor, bool]:
        """Everyone moves; returns agent 0's rewards (count,) and whether the episodes ended (then all
        restart)."""
        rewards = []
        for i, (agents, things, kinds) in enumerate(self.states):
            actions = [learner[i]] + scripted_actions(
                self.rng, self.game, agents, things, kinds, self.epsilon
            )[1:]
            agents, reward = advance(self.rng, agents, things, kinds, actions, self.size)
            self.states[i] = (agents, things, kinds)
            rewards.append(reward[0])
        self.returns += rewards
        self.t += 1
        if done := self.t == self.steps:
            self.finished += list(self.returns)
            self.states = [start(self.rng, self.game, self.size) for _ in self.states]
            self.t, self.returns, self.rfm_state = 0, np.zeros(len(self.states)), None
        return torch.tensor(rewards, dtype=torch.float32), done


class RFM(SameStepForValAndTest, pl.LightningModule):
    """The RFM and both baselines trained side by side on the same batches (no shared parameter)."""

    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/acc_rfm", "max")

    def __init__(
        self,
        *,
        features: PositiveInt = 8,
        entities: conint(gt=AGENTS - 1) = 5,
        hidden: PositiveInt = 64,
        lr: PositiveFloat = 1e-3,
        agents: bool = False,
        rfm_steps: NonNegativeInt = 0,
        game: Game = "stag_hunt",
        grid: conint(ge=4) = 8,
        episode_steps: PositiveInt = 20,
        epsilon: confloat(ge=0, le=1) = 0.1,
        envs: PositiveInt = 16,
        rollout: PositiveInt = 5,
        gamma: float = 0.95,
        eval_episodes: PositiveInt = 64,
    ):
        """`agents`: the second experiment; `game` … `epsilon` must describe the game the trajectories came
        from."""
        super().__init__()
        self.save_hyperparameters()
        if agents:  # the learner sees the scene and (or zeros in place of) the RFM's partner prediction
            inputs = entities * features + (AGENTS - 1) * ACTIONS
            self.learners = nn.ModuleDict(
                {name: mlp(inputs, hidden, ACTIONS + 1) for name in ("with_rfm", "without_rfm")}
            )
            self.games = {name: self.new_games(self.hparams.envs, seed=0) for name in self.learners}
        self.rfm = RFMNet(features, hidden)
        self.baselines = nn.ModuleDict(
            {"mlp": FlatMLP(features, entities, hidden), "lstm": FlatLSTM(features, entities, hidden)}
        )
        self.example_input_array = torch.zeros(2, 3, entities, features)

    def forward(self, scenes: Tensor) -> Tensor:
        """(B, T, E, F) → (B, T, agents, actions) logits of the RFM."""
        return self.rfm(scenes)[0]

    def predictions(self, scenes: Tensor) -> dict[str, Tensor]:
        if scenes.shape[2:] != (self.hparams.entities, self.hparams.features):
            raise ValueError(
                f"hparams.entities, hparams.features: the game's scenes have {scenes.shape[2]} entities of "
                f"{scenes.shape[3]} features, the model was built for {self.hparams.entities} of "
                f"{self.hparams.features}"
            )
        return {"rfm": self(scenes), **{name: net(scenes) for name, net in self.baselines.items()}}

    def training_step(self, batch, batch_idx: int) -> Tensor:
        if self.hparams.agents and self.global_step >= self.hparams.rfm_steps:
            return sum(self.a2c_loss(name) for name in self.learners)
        scenes, actions = batch
        losses = {
            k: F.cross_entropy(v.flatten(0, 2), actions.flatten())
            for k, v in self.predictions(scenes).items()
        }
        self.log_dict({f"train/loss_{k}": v for k, v in losses.items()}, batch_size=len(scenes))
        return sum(losses.values())

    def evaluation_step(self, batch, stage: str) -> None:
        scenes, actions = batch
        found = {
            f"{stage}/acc_{name}": (logits.argmax(-1) == actions).float().mean()
            for name, logits in self.predictions(scenes).items()
        }
        for baseline in ("mlp", "lstm"):  # the paper's claims: the relational model beats both
            if f"{stage}/acc_{baseline}" in found:
                found[f"{stage}/acc_rfm_minus_{baseline}"] = (
                    found[f"{stage}/acc_rfm"] - found[f"{stage}/acc_{baseline}"]
                )
        log_means(self, found, len(scenes))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # ---- the second experiment: A2C learners with and without the RFM's predictions ------------------------

    def new_games(self, count: int, seed: int) -> GridGames:
        h = self.hparams
        return GridGames(h.game, count, h.grid, h.episode_steps, h.epsilon, seed)

    def fresh_state(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.rfm.initial_state(count, self.hparams.entities, self.rfm.decode[0].weight)

    def act(self, name: str, scenes: Tensor, rfm_state) -> tuple[Tensor, Tensor, tuple]:
        """The learner's (action logits, value) and the RFM's next state; the RFM is frozen."""
        with torch.no_grad():
            predicted, rfm_state = self.rfm.step(scenes, rfm_state)
        partner = predicted[:, 1:].softmax(-1).flatten(1)
        out = self.learners[name](
            torch.cat([scenes.flatten(1), partner if name == "with_rfm" else torch.zeros_like(partner)], 1)
        )
        return out[:, :ACTIONS], out[:, ACTIONS], rfm_state

    def a2c_loss(self, name: str) -> Tensor:
        """`rollout` steps in the learner's games, n-step returns bootstrapped by the critic (advantage
        actor-critic)."""
        games, h = self.games[name], self.hparams
        state = games.rfm_state or self.fresh_state(len(games.states))
        log_probs, values, entropies, rewards, dones = [], [], [], [], []
        for _ in range(h.rollout):
            logits, value, state = self.act(
                name, games.observe().to(self.device), state or self.fresh_state(len(games.states))
            )
            policy = torch.distributions.Categorical(logits=logits)
            action = policy.sample()
            reward, done = games.step(action.tolist())
            (
                log_probs.append(policy.log_prob(action)),
                values.append(value),
                entropies.append(policy.entropy()),
            )
            rewards.append(reward.to(self.device)), dones.append(done)
            state = None if done else state
        games.rfm_state = state
        with torch.no_grad():
            ret = (
                torch.zeros_like(values[-1])
                if dones[-1]
                else self.act(name, games.observe().to(self.device), state)[1]
            )
        returns = []
        for reward, done in zip(reversed(rewards), reversed(dones)):
            ret = reward + h.gamma * ret * (not done)
            returns.insert(0, ret)
        advantage = torch.stack(returns) - torch.stack(values)
        if games.finished:
            self.log(f"train/return_{name}", float(np.mean(games.finished[-h.envs :])))
        return (
            -(torch.stack(log_probs) * advantage.detach()).mean()
            + 0.5 * advantage.pow(2).mean()
            - 0.01 * torch.stack(entropies).mean()
        )

    @torch.no_grad()
    def test_returns(self) -> dict[str, float]:
        """Each learner's mean return over `eval_episodes` fresh episodes (the same seed for both)."""
        found = {}
        for name in self.learners:
            games = self.new_games(self.hparams.eval_episodes, seed=1)
            state = self.fresh_state(self.hparams.eval_episodes)
            draws = torch.Generator().manual_seed(1)  # the same action draws for both learners, every run
            for _ in range(self.hparams.episode_steps):
                logits, _, state = self.act(name, games.observe().to(self.device), state)
                games.step(torch.multinomial(logits.softmax(-1).cpu(), 1, generator=draws)[:, 0].tolist())
            found[f"return_{name}"] = float(np.mean(games.finished))
        return found

    def on_test_epoch_end(self) -> None:
        if self.hparams.agents:
            returns = self.test_returns()
            returns["return_with_minus_without_rfm"] = (
                returns["return_with_rfm"] - returns["return_without_rfm"]
            )
            self.log_dict({f"test/{k}": v for k, v in returns.items()})

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """Mean edge-state norm from each entity to each other one over the test episodes: who drives whom."""
        import matplotlib.pyplot as plt

        scenes, _ = next(iter(data.test_dataloader()))
        self.eval()
        norms = self.rfm(scenes)[1].mean((0, 1))
        figure, axes = plt.subplots(figsize=(4.5, 4))
        shown = axes.imshow(norms.cpu(), cmap="viridis")
        names = [f"agent {i}" for i in range(AGENTS)] + [
            f"object {i}" for i in range(norms.shape[0] - AGENTS)
        ]
        axes.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
        axes.set_yticks(range(len(names)), names, fontsize=7)
        axes.set_xlabel("receiver"), axes.set_ylabel("sender")
        axes.set_title("RFM edge activation (mean ‖e_ij‖)", fontsize=9)
        figure.colorbar(shown)
        figure.tight_layout()
        curves = (
            {
                "reward_curves": curves_figure(
                    history,
                    [f"train/return_{n}" for n in self.learners],
                    "A2C learners beside a scripted partner",
                    "mean episode return",
                )
            }
            if self.hparams.agents
            else {}
        )
        return {"edge_activations": figure, **curves}
