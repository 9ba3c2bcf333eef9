"""Built-in cells: Keras-identical SimpleRNN, GRU and LSTM; SGU; RHN."""

from cellgraph.cells.gru import GRUCell
from cellgraph.cells.lstm import LSTMCell
from cellgraph.cells.rhn import RHNCell
from cellgraph.cells.sgu import SGUCell
from cellgraph.cells.simple_rnn import SimpleRNNCell

__all__ = ["GRUCell", "LSTMCell", "RHNCell", "SGUCell", "SimpleRNNCell"]
