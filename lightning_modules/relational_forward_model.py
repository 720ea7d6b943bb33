"""Relational Forward Modeling of Multi-Agent Systems (Tacchetti, Song, Mediano, Zambaldi, Rabinowitz, Graepel,
Botvinick & Battaglia, ICLR 2019, arXiv:1809.11044).

Paper:    an RFM predicts every agent's next action from the scene as a graph (entities as nodes, every
          ordered pair as an edge, a global): a graph-network encoder, a recurrent graph-network core whose
          edge, node and global updates are GRUs carried across time, and a graph-network decoder read out at
          the agents' nodes. Baselines: a feed-forward MLP and a recurrent model without relations (an LSTM
          over the flattened scene). Edge activations measure how much one entity drives another's action.
Faithful: encoder → GN core (edge GRU on [e_ij, v_i, v_j, u], node GRU on [v_i, Σ_j e_ji, u], global GRU on
          [mean v, mean e, u]) → decoder on the agent nodes, shared across entities, so permuting agents
          permutes the predictions; the two baselines trained side by side on the same batches; accuracy of
          the next-action prediction at every step of held-out episodes; the agent-to-agent edge norms as
          a figure.
Differs:  the trajectories come from the scripted agents of datamodules/multiagent.py, not trained A2C agents;
          the second experiment (agents given RFM predictions learn faster) is not built. The paper reports no
          numeric table, so there is no claim to judge; the metrics are the three models' accuracies.
"""
from __future__ import annotations

from typing import Annotated

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from annotated_types import Gt
from torch import Tensor, nn

from datamodules.multiagent import AGENTS, MOVES
from lightning_modules.common import SameStepForValAndTest
from lightning_modules.paper import Paper

PAPER = Paper(key="relational_forward_model", title="Relational Forward Modeling of Multi-Agent Systems",
              authors="Tacchetti, Song, Mediano, Zambaldi, Rabinowitz, Graepel, Botvinick, Battaglia", year=2018,
              arxiv="1809.11044", dataset="multiagent", claims=(), dataset_is_the_papers=False)
ACTIONS = len(MOVES)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class RelationalCore(nn.Module):
    """One recurrent graph-network step over a fully connected graph of E entities (no self edges)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.edge = nn.GRUCell(4 * hidden, hidden)
        self.node = nn.GRUCell(3 * hidden, hidden)
        self.world = nn.GRUCell(3 * hidden, hidden)

    def forward(self, nodes: Tensor, edges: Tensor, world: Tensor, state: tuple[Tensor, Tensor, Tensor]):
        """nodes (B, E, H), edges (B, E, E, H) [sender, receiver], world (B, H) → the new states, same shapes."""
        batch, count, hidden = nodes.shape
        h_edges, h_nodes, h_world = state
        senders, receivers = nodes[:, :, None].expand(-1, -1, count, -1), nodes[:, None].expand(-1, count, -1, -1)
        edge_in = torch.cat([edges, senders, receivers, world[:, None, None].expand(-1, count, count, -1)], -1)
        new_edges = self.edge(edge_in.reshape(-1, 4 * hidden), h_edges.reshape(-1, hidden)).view(batch, count, count, hidden)
        off_diagonal = 1 - torch.eye(count, device=nodes.device)[None, :, :, None]
        new_edges = new_edges * off_diagonal                          # no entity sends a message to itself
        incoming = new_edges.sum(1)                                   # Σ over senders, per receiver
        node_in = torch.cat([nodes, incoming, world[:, None].expand(-1, count, -1)], -1)
        new_nodes = self.node(node_in.reshape(-1, 3 * hidden), h_nodes.reshape(-1, hidden)).view(batch, count, hidden)
        world_in = torch.cat([new_nodes.mean(1), new_edges.sum((1, 2)) / (count * (count - 1)), world], -1)
        return new_edges, new_nodes, self.world(world_in, h_world)


class RFMNet(nn.Module):
    """(B, T, E, F) scenes → (B, T, agents, actions) logits, and the edge states for inspection."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.encode_node, self.encode_edge = mlp(features, hidden, hidden), mlp(2 * features, hidden, hidden)
        self.core = RelationalCore(hidden)
        self.decode = mlp(2 * hidden, hidden, ACTIONS)

    def forward(self, scenes: Tensor) -> tuple[Tensor, Tensor]:
        batch, steps, count, _ = scenes.shape
        zeros = scenes.new_zeros
        state = (zeros(batch, count, count, self.hidden), zeros(batch, count, self.hidden), zeros(batch, self.hidden))
        logits, edge_norms = [], []
        for t in range(steps):
            x = scenes[:, t]
            nodes = self.encode_node(x)
            pairs = torch.cat([x[:, :, None].expand(-1, -1, count, -1), x[:, None].expand(-1, count, -1, -1)], -1)
            edges, world = self.encode_edge(pairs), nodes.mean(1)
            state = self.core(nodes, edges, world, state)
            logits.append(self.decode(torch.cat([state[1][:, :AGENTS], nodes[:, :AGENTS]], -1)))
            edge_norms.append(state[0].norm(dim=-1))
        return torch.stack(logits, 1), torch.stack(edge_norms, 1)


class FlatMLP(nn.Module):
    """The feed-forward baseline: the flattened scene at t → every agent's action at t."""

    def __init__(self, features: int, entities: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(2), mlp(features * entities, hidden, AGENTS * ACTIONS))

    def forward(self, scenes: Tensor) -> Tensor:
        return self.net(scenes).unflatten(-1, (AGENTS, ACTIONS))


class FlatLSTM(nn.Module):
    """The recurrent baseline without relations: an LSTM over the flattened scenes."""

    def __init__(self, features: int, entities: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(features * entities, hidden, batch_first=True)
        self.head = nn.Linear(hidden, AGENTS * ACTIONS)

    def forward(self, scenes: Tensor) -> Tensor:
        return self.head(self.lstm(scenes.flatten(2))[0]).unflatten(-1, (AGENTS, ACTIONS))


class RFM(SameStepForValAndTest, pl.LightningModule):
    """The RFM and both baselines trained side by side on the same batches (no shared parameter)."""

    paper = PAPER

    def __init__(self, *, features: Annotated[int, Gt(0)] = 8, entities: Annotated[int, Gt(AGENTS - 1)] = 5,
                 hidden: Annotated[int, Gt(0)] = 64, lr: Annotated[float, Gt(0)] = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.rfm = RFMNet(features, hidden)
        self.baselines = nn.ModuleDict({"mlp": FlatMLP(features, entities, hidden), "lstm": FlatLSTM(features, entities, hidden)})
        self.monitor = ("val/acc_rfm", "max")
        self.example_input_array = torch.zeros(2, 3, entities, features)

    def forward(self, scenes: Tensor) -> Tensor:
        """(B, T, E, F) → (B, T, agents, actions) logits of the RFM."""
        return self.rfm(scenes)[0]

    def predictions(self, scenes: Tensor) -> dict[str, Tensor]:
        if scenes.shape[2:] != (self.hparams.entities, self.hparams.features):
            raise ValueError(f"hparams.entities, hparams.features: the game's scenes have {scenes.shape[2]} entities of "
                             f"{scenes.shape[3]} features, the model was built for {self.hparams.entities} of "
                             f"{self.hparams.features}")
        return {"rfm": self(scenes), **{name: net(scenes) for name, net in self.baselines.items()}}

    def training_step(self, batch, batch_idx: int) -> Tensor:
        scenes, actions = batch
        losses = {k: F.cross_entropy(v.flatten(0, 2), actions.flatten()) for k, v in self.predictions(scenes).items()}
        self.log_dict({f"train/loss_{k}": v for k, v in losses.items()}, batch_size=len(scenes))
        return sum(losses.values())

    def evaluation_step(self, batch, stage: str) -> None:
        scenes, actions = batch
        for name, logits in self.predictions(scenes).items():
            self.log(f"{stage}/acc_{name}", (logits.argmax(-1) == actions).float().mean(), batch_size=len(scenes))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """Mean edge-state norm from each entity to each other one over the test episodes: who drives whom."""
        import matplotlib.pyplot as plt

        scenes, _ = next(iter(data.test_dataloader()))
        self.eval()
        norms = self.rfm(scenes)[1].mean((0, 1))
        figure, axes = plt.subplots(figsize=(4.5, 4))
        shown = axes.imshow(norms.cpu(), cmap="viridis")
        names = [f"agent {i}" for i in range(AGENTS)] + [f"object {i}" for i in range(norms.shape[0] - AGENTS)]
        axes.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
        axes.set_yticks(range(len(names)), names, fontsize=7)
        axes.set_xlabel("receiver"), axes.set_ylabel("sender")
        axes.set_title("RFM edge activation (mean ‖e_ij‖)", fontsize=9)
        figure.colorbar(shown)
        figure.tight_layout()
        return {"edge_activations": figure}
