"""DIANet: Dense-and-Implicit Attention Network (Huang et al., AAAI 2020),
https://arxiv.org/abs/1905.10671

Official code: gbup-group/DIANet, models/cifar/dia_resnet.py (`LSTMCell`, `small_cell`, `Attention`). One
LSTM cell is shared by all blocks of a stage: each block's output x (before the residual addition) is
average-pooled, fed to the cell with the state left by the previous block, and the new hidden state h gates
it, x · h. The cell's input-to-gates and hidden-to-gates maps are each Linear C->C/r -> ReLU -> Linear
C/r->4C (both with bias, r=4), and the hidden state is o · sigmoid(c), not the usual o · tanh(c).

Interface: placement "shared_per_stage" inserts ONE instance at every block point of a stage and calls
`reset_state()` from a forward pre-hook on the stage, so every forward pass starts from zero state. The
release's cell dropout acts only between stacked LSTM layers, and DIANet uses one, so there is none here.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.modules.base import Paper, attention, hidden_units


def _gate_mlp(channels: int, hidden: int) -> nn.Sequential:
    """DIANet's `small_cell`: the bottleneck MLP that replaces an LSTM's linear gate map."""
    return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4 * channels))


def _dia_params(channels: int, reduction: int) -> int:
    hidden = channels // reduction
    return 2 * (channels * hidden + hidden + hidden * 4 * channels + 4 * channels)


@attention(
    "dia",
    paper=Paper(
        "DIANet: Dense-and-Implicit Attention Network", "AAAI", 2020, "https://arxiv.org/abs/1905.10671"
    ),
    placement="shared_per_stage",
    params=_dia_params,
    formula="per stage: 2·(5·C·C/r + C/r + 4·C) (2.5·C² + 8.5·C at r=4)",
    notes="one instance shared by every block of a stage; state reset per forward pass",
)
class DenseImplicitAttention(nn.Module):
    """A modified LSTM cell whose hidden state gates the channels of successive block outputs."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = hidden_units(channels, reduction, "dia")
        self.input_gates = _gate_mlp(channels, hidden)
        self.hidden_gates = _gate_mlp(channels, hidden)
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._carry = False

    def reset_state(self) -> None:
        """Start a new sequence: the next call starts from zero state and hands (h, c) on to later calls.

        Until the first reset (a module used on its own, outside a stage) every call is a one-step sequence
        from zero state, so the module stays a pure function of its input.
        """
        self._state = None
        self._carry = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        if self._state is None:
            hidden_state = cell_state = torch.zeros_like(pooled)
        else:
            hidden_state, cell_state = self._state
        gates = self.input_gates(pooled) + self.hidden_gates(hidden_state)
        input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
        cell_state = torch.sigmoid(forget_gate) * cell_state
        cell_state = cell_state + torch.sigmoid(input_gate) * torch.tanh(candidate)
        hidden_state = torch.sigmoid(output_gate) * torch.sigmoid(cell_state)
        if self._carry:
            self._state = (hidden_state, cell_state)
        return x * hidden_state[:, :, None, None]
