"""Small models of every public cellgraph class, saved and loaded across backends.

Run as `python tests/_portable_models.py save DIR` or `... load DIR` under a
given KERAS_BACKEND: `save` trains each model for one step, saves it as
`DIR/<backend>-<name>.keras` and its predictions as `.npy`; `load` loads every
`.keras` file in DIR (from any backend) and writes its predictions under this
backend as `<file>.on-<backend>.npy`.
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

import cellgraph as cg
from cellgraph.feedback import FeedbackChain, Merger, Splitter


def data(name):
    rng = np.random.default_rng(7)
    if name == "feedback":
        return rng.random((4, 6, 6, 1)).astype("float32")
    if name == "superloop":
        return rng.random((4, 5, 1)).astype("float32")
    return rng.random((4, 5, 3)).astype("float32")


def build(name):
    if name == "lstm":  # a built-in cell, stateless options, a mask
        x = keras.Input((5, 3))
        h = layers.Masking(0.0)(x)
        h = cg.cells.LSTMCell(4, input_dim=3).get_layer(return_sequences=True)(h)
        y = layers.Dense(2)(h)
    elif name == "graph":  # a hand-written step graph with a readout
        x_t, h_tm1, y_tm1 = keras.Input((3,)), keras.Input((4,)), keras.Input((2,))
        h_t = layers.Dense(4, activation="tanh")(
            layers.Concatenate()([x_t, h_tm1, y_tm1])
        )
        y_t = layers.Dense(2)(h_t)
        rnn = cg.RecurrentModel(
            input=x_t,
            output=y_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            readout_input=y_tm1,
            return_sequences=True,
        )
        x = keras.Input((5, 3))
        y = rnn(x)
    elif name == "sequential":
        stack = cg.RecurrentSequential(
            layers=[cg.cells.GRUCell(4), cg.cells.SGUCell(4), layers.Dense(3)],
            readout="add",
            return_sequences=True,
        )
        x = keras.Input((5, 3))
        y = stack(x)
    elif name == "superloop":
        memory = cg.systems.RegisterMemory(depth=3, width=2)
        loop = cg.Superloop(cell="sgu", layers=2, units=6, systems=[memory], outputs=2)
        x = keras.Input((5, 1))
        y = loop(x)
    elif name == "feedback":
        chain = FeedbackChain(
            [
                layers.Conv2D(3, 3, padding="same"),
                Merger("top", layers.Conv2DTranspose(3, 3, strides=2, padding="same")),
                layers.ReLU(),
                layers.MaxPooling2D(2),
                layers.Conv2D(3, 3, padding="same", activation="relu"),
                Splitter("top"),
                layers.GlobalAveragePooling2D(),
                layers.Dense(2),
            ],
            input_shape=(6, 6, 1),
        )
        x = keras.Input((6, 6, 1))
        y = chain.get_layer(timesteps=3, return_sequences=True)(x)
    else:
        raise ValueError(name)
    model = keras.Model(x, y, name=name)
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    return model


NAMES = ("lstm", "graph", "sequential", "superloop", "feedback")


def main(argv):
    command, folder = argv
    folder = Path(folder)
    backend = keras.backend.backend()
    if command == "save":
        for name in NAMES:
            keras.utils.set_random_seed(0)
            model = build(name)
            x = data(name)
            target = np.zeros(model.output_shape[1:], "float32")[None].repeat(4, 0)
            model.fit(x, target + 0.5, epochs=1, batch_size=4, verbose=0)
            model.save(folder / f"{backend}-{name}.keras")
            np.save(folder / f"{backend}-{name}.npy", model.predict(x, verbose=0))
    elif command == "load":
        for path in sorted(folder.glob("*.keras")):
            name = path.stem.split("-", 1)[1]
            model = keras.saving.load_model(path, safe_mode=True)
            prediction = model.predict(data(name), verbose=0)
            np.save(folder / f"{path.stem}.on-{backend}.npy", prediction)
    else:
        raise ValueError(command)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(sys.argv[1:])
