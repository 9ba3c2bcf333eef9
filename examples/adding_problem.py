"""The adding problem at T=100 with an LSTM written as a cellgraph step graph.

Each sequence has two channels: values uniform in [0, 1] and a marker channel
with one 1 in each half. The target is the sum of the two marked values.
Always predicting the mean (1.0) gives MSE 2/12 = 0.167; the goal is < 0.01.

    python examples/adding_problem.py            # full run (minutes on 2 cores)
    python examples/adding_problem.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cellgraph.demo_adding import BASELINE_MSE, build_model, make_adding_data  # noqa: E402

TIMESTEPS = 100


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train, epochs = (512, 1) if args.quick else (20000, 20)
    epochs = args.epochs or epochs
    x_train, y_train = make_adding_data(train, TIMESTEPS, rng)
    x_test, y_test = make_adding_data(256 if args.quick else 2000, TIMESTEPS, rng)
    model = build_model(args.units, TIMESTEPS, learning_rate=3e-3)
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=epochs,
        validation_data=(x_test, y_test),
        verbose=0 if args.quick else 2,
    )
    seconds = time.perf_counter() - start
    result = {
        "timesteps": TIMESTEPS,
        "train_sequences": train,
        "epochs": epochs,
        "test_mse": float(model.evaluate(x_test, y_test, verbose=0)),
        "baseline_mse": BASELINE_MSE,
        "best_val_mse": float(min(history.history["val_loss"])),
        "train_seconds": round(seconds, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
