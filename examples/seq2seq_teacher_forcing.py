"""Reverse digit strings: encoder + attentive decoder, trained by teacher forcing.

The decoder is one `cellgraph.RecurrentModel` whose step graph reads:
- its own previous output (a readout; the ground truth in training),
- the encoder's whole output sequence (a constant, looked at with attention),
and keeps LSTM states initialised from the encoder. At test time it runs
free: it feeds back its own predictions and never sees the targets.

    python examples/seq2seq_teacher_forcing.py           # full run
    python examples/seq2seq_teacher_forcing.py --quick   # smoke run

Reports exact-sequence accuracy on held-out strings (free-running).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import cellgraph as cg  # noqa: E402

PAD = 0  # token 0 pads; digits d are tokens d + 1
VOCAB = 11
MAX_LEN = 10


def make_data(count: int, rng: np.random.Generator, min_len=5, max_len=MAX_LEN):
    """Random digit strings (tokens 1..10), padded with 0, and their reversals."""
    source = np.zeros((count, max_len), "int32")
    target = np.zeros((count, max_len), "int32")
    for i, length in enumerate(rng.integers(min_len, max_len + 1, count)):
        digits = rng.integers(1, VOCAB, length)
        source[i, :length] = digits
        target[i, :length] = digits[::-1]
    return source, target


def build_models(units: int):
    """Returns (training model, inference model) sharing all weights."""
    # One decoder step: previous token (readout), attention over the encoder.
    memory = keras.Input((MAX_LEN, units), name="encoder_outputs")
    memory_mask = keras.Input((MAX_LEN,), dtype="bool", name="encoder_mask")
    summary = keras.Input((units,), name="summary")
    previous = keras.Input((VOCAB,), name="previous_token")
    h_tm1, c_tm1 = (
        keras.Input((units,), name="h_tm1"),
        keras.Input((units,), name="c_tm1"),
    )
    query = layers.Dense(units, use_bias=False)(h_tm1)
    scores = layers.Dot(axes=(2, 1))([memory, query])
    weights = layers.Softmax()(scores, mask=memory_mask)  # padding gets no weight
    context = layers.Dot(axes=(1, 1))([weights, memory])
    step_input = layers.Concatenate()([previous, context, summary])
    out, h_t, c_t = cg.cells.LSTMCell(units)([step_input, h_tm1, c_tm1])
    probabilities = layers.Dense(VOCAB, activation="softmax")(out)
    decoder = cg.RecurrentModel(
        input=summary,
        output=probabilities,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        readout_input=previous,
        constants=[memory, memory_mask],
        teacher_force=True,
        decode=True,
        output_length=MAX_LEN,
        return_sequences=True,
        name="decoder",
    )

    # Encoder: embedding, then an LSTM written as a step graph, both directions.
    tokens = keras.Input((MAX_LEN,), dtype="int32", name="tokens")
    embedded = layers.Embedding(VOCAB, 32, mask_zero=True)(tokens)
    encoder = layers.Bidirectional(
        cg.cells.LSTMCell(units // 2, input_dim=32).get_layer(return_sequences=True),
        name="encoder",
    )
    encoded = encoder(embedded)
    mask = keras.ops.not_equal(tokens, PAD)
    last = layers.GlobalAveragePooling1D()(encoded, mask=mask)
    h0 = layers.Dense(units, activation="tanh")(last)
    c0 = layers.Dense(units)(last)

    truth = keras.Input((MAX_LEN, VOCAB), name="target_one_hot")
    train_out = decoder(
        last, initial_state=[h0, c0], ground_truth=truth, constants=[encoded, mask]
    )
    trainer = keras.Model([tokens, truth], train_out)
    infer_out = decoder(last, initial_state=[h0, c0], constants=[encoded, mask])
    inference = keras.Model(tokens, infer_out)
    return trainer, inference


def accuracies(model, source, target) -> dict:
    """Exact-sequence and per-token accuracy of the free-running decoder.

    `padding_baseline_accuracy` is the per-token accuracy of always
    answering the padding token.
    """
    predicted = model.predict(source, verbose=0, batch_size=256).argmax(-1)
    return {
        "test_exact_accuracy": float(np.mean(np.all(predicted == target, axis=1))),
        "test_token_accuracy": float(np.mean(predicted == target)),
        "padding_baseline_accuracy": float(np.mean(target == PAD)),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_count, epochs = (512, 1) if args.quick else (20000, 12)
    epochs = args.epochs or epochs
    x_train, y_train = make_data(train_count, rng)
    x_test, y_test = make_data(256 if args.quick else 2000, rng)
    trainer, inference = build_models(args.units)
    trainer.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    one_hot = np.eye(VOCAB, dtype="float32")
    start = time.perf_counter()
    history = trainer.fit(
        [x_train, one_hot[y_train]],
        y_train,
        batch_size=64,
        epochs=epochs,
        verbose=0 if args.quick else 2,
    )
    seconds = time.perf_counter() - start
    result = {
        "train_strings": train_count,
        "epochs": epochs,
        "final_loss": float(history.history["loss"][-1]),
        **accuracies(inference, x_test, y_test),
        "train_seconds": round(seconds, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
