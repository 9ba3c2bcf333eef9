"""Trains a model holding a RecurrentModel under a tf.distribute strategy.

A helper of tests/test_distribute.py, run in a fresh process because the
device set-up must come before TensorFlow initialises its devices:

    python tests/_distribute_worker.py mirrored DATA.npz OUT.npz
    TF_CONFIG=... python tests/_distribute_worker.py multi_worker DATA.npz OUT.npz

`mirrored` splits the one CPU into two logical devices and trains with
`model.fit` under `tf.distribute.MirroredStrategy` on both; `multi_worker` is
one worker of a `tf.distribute.MultiWorkerMirroredStrategy` cluster described
by `TF_CONFIG`, trained with a custom loop (`strategy.run`): in Keras 3.15 /
TF 2.21 `model.fit` under that strategy fails inside Keras before the first
step, for any model (keras-team/keras#20585).
DATA.npz holds `x`, `y` and the initial weights `w0`, `w1`, ...; OUT.npz gets
the trained weights, the loss history, the number of replicas and the shapes
of the per-replica parts of the first global batch.
"""

from __future__ import annotations

import os
import sys

import numpy as np

BATCH = 8  # the global batch, split across the replicas
EPOCHS = 2
LEARNING_RATE = 0.1


def build_model():
    """One RecurrentModel: an LSTM cell in a step graph, learned initial states."""
    import keras
    from keras import layers

    import cellgraph as cg

    x_t, h_tm1, c_tm1 = keras.Input((3,)), keras.Input((4,)), keras.Input((4,))
    out, h_t, c_t = cg.cells.LSTMCell(4)([x_t, h_tm1, c_tm1])
    y_t = layers.Dense(2, activation="tanh")(layers.Concatenate()([out, x_t]))
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        state_initializer="learned",
    )
    inputs = keras.Input((5, 3))
    return keras.Model(inputs, layers.Dense(1)(rnn(inputs)))


def train(model, x, y):
    """Compiles with SGD and MSE and fits in order (no shuffling)."""
    import keras

    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return history.history["loss"]


def global_batches(x, y):
    """The data in global batches, in order; workers shard it by element."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    return dataset.with_options(options)


def train_custom_loop(strategy, model, x, y):
    """The same training as `train`, as a custom loop run by `strategy.run`.

    Each replica gets its part of every global batch and scales its loss
    by the global batch size; the optimizer sums the replicas' gradients.
    """
    import keras
    import tensorflow as tf

    with strategy.scope():
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
    batches = strategy.experimental_distribute_dataset(global_batches(x, y))

    def replica_step(inputs, targets):
        with tf.GradientTape() as tape:
            errors = keras.losses.mean_squared_error(targets, model(inputs))
            loss = tf.reduce_sum(errors) / BATCH
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(inputs, targets):
        losses = strategy.run(replica_step, args=(inputs, targets))
        return strategy.reduce("SUM", losses, axis=None)

    history = []
    for _ in range(EPOCHS):
        history.append(np.mean([float(train_step(*batch)) for batch in batches]))
    return history


def strategy_for(mode: str):
    """The strategy, created before anything else initialises TensorFlow."""
    import tensorflow as tf

    if mode == "mirrored":
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if mode == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"mode must be 'mirrored' or 'multi_worker'. Received: {mode!r}")


def main(mode: str, data_path: str, out_path: str) -> None:
    strategy = strategy_for(mode)
    data = np.load(data_path)
    x, y = data["x"], data["y"]
    initial = [data[f"w{i}"] for i in range(len(data.files) - 2)]
    with strategy.scope():
        model = build_model()
        model.set_weights(initial)
    first = next(iter(strategy.experimental_distribute_dataset(global_batches(x, y))))
    parts = strategy.experimental_local_results(first[0])
    if mode == "mirrored":
        loss = train(model, x, y)
    else:
        loss = train_custom_loop(strategy, model, x, y)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(
        out_path,
        loss=np.asarray(loss),
        replicas=strategy.num_replicas_in_sync,
        local_batch_shapes=np.asarray([tuple(p.shape) for p in parts]),
        **weights,
    )
    print(f"done: {strategy.num_replicas_in_sync} replicas, loss {loss}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(*sys.argv[1:])
