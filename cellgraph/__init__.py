"""cellgraph: recurrent networks of any shape, from one Keras timestep graph."""

from cellgraph import cells, feedback, systems
from cellgraph.cell import RNNCell
from cellgraph.plotting import plot_step_graph, plot_unrolled
from cellgraph.recurrent_model import GraphCell, RecurrentModel
from cellgraph.sequential import RecurrentSequential
from cellgraph.step_graph import GraphLayout, StepGraph
from cellgraph.superloop import Superloop

__all__ = [
    "GraphCell",
    "GraphLayout",
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
