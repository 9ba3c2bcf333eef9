"""External systems for superloops: memories and attention as step-graph layers.

Each system is a `keras.layers.Layer` called in a step graph as
`read_t, *states_t = system([controller_t, *states_tm1, *constants])`; see
`System` for the contract and each class for its raw control layout.
"""

from cellgraph.systems.addressable_memory import AddressableMemory
from cellgraph.systems.attention import Attention
from cellgraph.systems.base import System
from cellgraph.systems.queue import Queue
from cellgraph.systems.register_memory import RegisterMemory
from cellgraph.systems.stack import Stack

__all__ = [
    "AddressableMemory",
    "Attention",
    "Queue",
    "RegisterMemory",
    "Stack",
    "System",
]
