"""Built-in cells: Keras-identical SimpleRNN, GRU and LSTM; SGU; RHN; fused stacks."""

from cellgraph.cells.fused import FusedCellStack, fuse_weights, unfuse_weights
from cellgraph.cells.gru import GRUCell
from cellgraph.cells.lstm import LSTMCell
from cellgraph.cells.rhn import RHNCell
from cellgraph.cells.sgu import SGUCell
from cellgraph.cells.simple_rnn import SimpleRNNCell

__all__ = [
    "FusedCellStack",
    "GRUCell",
    "LSTMCell",
    "RHNCell",
    "SGUCell",
    "SimpleRNNCell",
    "fuse_weights",
    "unfuse_weights",
]
