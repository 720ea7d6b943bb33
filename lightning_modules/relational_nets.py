"""The networks of Relational Forward Models (§2): the graph-network RFM (encoder, recurrent GN core, decoder)
and its two baselines without relations, a feed-forward MLP and an LSTM over the flattened scene."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from datamodules.multiagent import AGENTS, MOVES

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
        """nodes (B, E, H), edges (B, E, E, H) [sender, receiver], world (B, H) → the new states, same
        shapes."""
        batch, count, hidden = nodes.shape
        h_edges, h_nodes, h_world = state
        senders, receivers = (
            nodes[:, :, None].expand(-1, -1, count, -1),
            nodes[:, None].expand(-1, count, -1, -1),
        )
        edge_in = torch.cat(
            [edges, senders, receivers, world[:, None, None].expand(-1, count, count, -1)], -1
        )
        new_edges = self.edge(edge_in.reshape(-1, 4 * hidden), h_edges.reshape(-1, hidden)).view(
            batch, count, count, hidden
        )
        off_diagonal = 1 - torch.eye(count, device=nodes.device)[None, :, :, None]
        new_edges = new_edges * off_diagonal  # no entity sends a message to itself
        incoming = new_edges.sum(1)  # Σ over senders, per receiver
        node_in = torch.cat([nodes, incoming, world[:, None].expand(-1, count, -1)], -1)
        new_nodes = self.node(node_in.reshape(-1, 3 * hidden), h_nodes.reshape(-1, hidden)).view(
            batch, count, hidden
        )
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

    def initial_state(self, batch: int, count: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        zeros = like.new_zeros
        return (
            zeros(batch, count, count, self.hidden),
            zeros(batch, count, self.hidden),
            zeros(batch, self.hidden),
        )

    def step(
        self, x: Tensor, state: tuple[Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """One time step: scene (B, E, F) → the agents' action logits (B, agents, actions) and the new
        state."""
        count = x.shape[1]
        nodes = self.encode_node(x)
        pairs = torch.cat([x[:, :, None].expand(-1, -1, count, -1), x[:, None].expand(-1, count, -1, -1)], -1)
        state = self.core(nodes, self.encode_edge(pairs), nodes.mean(1), state)
        return self.decode(torch.cat([state[1][:, :AGENTS], nodes[:, :AGENTS]], -1)), state

    def forward(self, scenes: Tensor) -> tuple[Tensor, Tensor]:
        batch, steps, count, _ = scenes.shape
        state, logits, edge_norms = self.initial_state(batch, count, scenes), [], []
        for t in range(steps):
            found, state = self.step(scenes[:, t], state)
            logits.append(found)
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
