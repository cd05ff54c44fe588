"""The recurrent classifier: PyTorch's fused RNN/LSTM/GRU and an affine read-out."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.core.spec import CELLS, ModelConfig
from rnnlab.errors import RnnlabError

_CELL_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """Reads a (batch, steps, patch) sequence and classifies from the last hidden state.

    ``h0`` is zero for every batch (PyTorch's default when no state is passed), so every sample
    starts from the same state, as in the tutorial.
    """

    def __init__(self, cfg: ModelConfig, input_size: int, classes: int = 10):
        super().__init__()
        if cfg.cell not in _CELL_CLASSES:
            raise RnnlabError(f"unknown cell {cfg.cell!r}; valid cells: {', '.join(CELLS)}")
        kwargs = {"nonlinearity": "tanh"} if cfg.cell == "rnn" else {}
        self.cell = cfg.cell
        self.rnn = _CELL_CLASSES[cfg.cell](
            input_size, cfg.hidden, num_layers=cfg.layers, batch_first=True, **kwargs
        )
        self.head = nn.Linear(cfg.hidden, classes)
        if cfg.init == "tutorial":
            self._tutorial_init()

    def _tutorial_init(self) -> None:
        # IRNN (Le, Jaitly & Hinton 2015): recurrent weights = identity, biases = 0; Xavier for
        # input and output weights. LSTM/GRU get orthogonal recurrent weights per gate instead
        # (identity is meaningless for gated cells) and LSTM a forget-gate bias of 1.
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                if self.cell == "rnn":
                    nn.init.eye_(param)
                else:
                    for gate in param.data.chunk(param.shape[0] // param.shape[1]):
                        nn.init.orthogonal_(gate)
            elif name.startswith("bias"):
                nn.init.zeros_(param)
                if self.cell == "lstm" and name.startswith("bias_ih"):
                    hidden = param.shape[0] // 4
                    param.data[hidden : 2 * hidden] = 1.0  # gate order: input, forget, cell, out
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # out: (batch, steps, hidden); h0 = 0
        return self.head(out[:, -1])  # logits: (batch, classes) from the last step

    def weight_matrices(self) -> list[nn.Parameter]:
        """The parameters the L2 penalty covers: every weight matrix, no bias."""
        return [p for name, p in self.named_parameters() if "weight" in name]


def build_model(cfg: ModelConfig, input_size: int) -> RecurrentClassifier:
    """Build the classifier a model config describes."""
    return RecurrentClassifier(cfg, input_size)
