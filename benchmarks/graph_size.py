"""Counts the TensorFlow ops traced for a few cellgraph models: a deterministic A/B.

Timings on a shared 2-core machine spread by 20-30 % between rounds; the number
of ops TensorFlow traces for a layer (loop bodies and gradient functions
included) does not. Run it on two checkouts to compare engines:

    python benchmarks/graph_size.py            # prints one line per model
    python benchmarks/graph_size.py --json out.json

Equal or fewer ops in the loop body means the loop does no more work per step.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import layers  # noqa: E402

import cellgraph as cg  # noqa: E402


def _lstm():
    rnn = cg.cells.LSTMCell(128, input_dim=32).get_layer()
    x = keras.Input((100, 32))
    return keras.Model(x, layers.Dense(1)(rnn(x))), [(64, 100, 32)], (64, 1)


def _superloop():
    loop = cg.Superloop(
        cell="sgu",
        layers=8,
        units=16,
        systems=[cg.systems.RegisterMemory(3, 4)],
        outputs=8,
    )
    x = keras.Input((64, 8))
    return keras.Model(x, loop(x)), [(64, 64, 8)], (64, 64, 8)


def _masked_two_inputs():
    a_t, b_t, h_tm1 = keras.Input((3,)), keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([a_t, b_t, h_tm1]))
    rnn = cg.RecurrentModel(
        input=[a_t, b_t], output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    a, b = keras.Input((10, 3)), keras.Input((10, 3))
    model = keras.Model([a, b], rnn([layers.Masking()(a), b]))
    return model, [(8, 10, 3), (8, 10, 3)], (8, 4)


MODELS = {
    "lstm": _lstm,
    "superloop (8 x SGUCell(16), RegisterMemory)": _superloop,
    "two inputs, one masked": _masked_two_inputs,
}


def _ops(function, *args) -> int:
    import tensorflow as tf

    graph = tf.function(function).get_concrete_function(*args).graph
    definition = graph.as_graph_def()
    return len(definition.node) + sum(
        len(f.node_def) for f in definition.library.function
    )


def count(build) -> dict:
    """`{"inference": n, "train": n}`: ops traced for a forward and a gradient."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model, shapes, target_shape = build()
    inputs = [tf.zeros(s) for s in shapes]
    x = inputs if len(inputs) > 1 else inputs[0]
    target = tf.zeros(target_shape)

    def train(x, target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x, training=True) - target) ** 2)
        return tape.gradient(loss, model.trainable_variables)

    return {
        "inference": _ops(lambda x: model(x, training=False), x),
        "train": _ops(train, x, target),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the counts to this file")
    args = parser.parse_args(argv)
    results = {name: count(build) for name, build in MODELS.items()}
    for name, ops in results.items():
        print(f"{name}: {ops['inference']} ops inference, {ops['train']} ops train")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
