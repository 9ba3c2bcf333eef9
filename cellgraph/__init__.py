"""cellgraph: recurrent networks of any shape, from one Keras timestep graph."""

from cellgraph import cells, feedback, systems
from cellgraph.cell import GraphCell, RNNCell
from cellgraph.plotting import plot_step_graph, plot_unrolled
from cellgraph.recurrent_model import RecurrentModel
from cellgraph.sequential import RecurrentSequential
from cellgraph.step_graph import StepGraph
from cellgraph.superloop import Superloop

__all__ = [
    "GraphCell",
    "RNNCell",
    "RecurrentModel",
    "RecurrentSequential",
    "StepGraph",
    "Superloop",
    "cells",
    "feedback",
    "plot_step_graph",
    "plot_unrolled",
    "systems",
]
__version__ = "0.1.0"
