"""Feedback networks: whole (convolutional) networks with feedback as one RNNCell.

`FeedbackChain([...])` runs a list of layers in which `Splitter("name")`
records a state and `Merger("name", branch, op)` folds
`branch(state of the previous step)` back into the stream; `FeedbackTree` is
the variant in which information takes one step per Splitter.
`spoerer2017(variant, input_shape, classes, timesteps)` builds the B, BK,
BF, BL, BT and BLT models of Spoerer, McClure & Kriegeskorte (2017).
"""

from cellgraph.feedback.chain import FeedbackChain, FeedbackTree
from cellgraph.feedback.markers import Merger, Splitter
from cellgraph.feedback.spoerer import (
    VARIANTS,
    LocalResponseNormalization,
    spoerer2017,
    spoerer2017_chain,
)

__all__ = [
    "VARIANTS",
    "FeedbackChain",
    "FeedbackTree",
    "LocalResponseNormalization",
    "Merger",
    "Splitter",
    "spoerer2017",
    "spoerer2017_chain",
]
