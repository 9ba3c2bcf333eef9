"""scikit-learn's 8x8 digits read row by row by a hand-written gated cell.

Each image of `sklearn.datasets.load_digits` (1797 images, no download) is a
sequence of 8 rows of 8 pixels. The step graph is a minimal gated unit (MGU,
Zhou et al. 2016) written with plain Keras layers, one forget gate `f` and a
candidate state:

    f_t = sigmoid(W_f x_t + U_f h_tm1 + b_f)
    c_t = tanh(W_c x_t + U_c (f_t * h_tm1) + b_c)
    h_t = h_tm1 + f_t * (c_t - h_tm1)    # = (1 - f_t) h_tm1 + f_t c_t

`cellgraph.RecurrentModel` runs it over the rows, both ways
(`keras.layers.Bidirectional`); the max and mean of its outputs over the rows
feed a softmax. Training images are shown twice per epoch, once as they are
and once shifted by up to one pixel (fresh shifts every epoch).

Split: a stratified hold-out of 25% (`train_test_split(test_size=0.25,
stratify=y, random_state=seed)`, 1347 training and 450 test images). The
model is trained for a fixed number of epochs (cosine learning-rate decay, no
early stopping), so the test set never chooses anything; its per-epoch
accuracy is recorded only for the curves. For comparison the script also
fits scikit-learn's own digits classifier (`SVC(gamma=0.001)`, from the
scikit-learn example "Recognizing hand-written digits", which reports 0.97
on its 50/50 unshuffled split) on the same split.

    python examples/digits_rows.py            # full run (~1.5 minutes on 2 cores)
    python examples/digits_rows.py --quick    # smoke run (seconds)

The full run's figures are recorded in docs/gallery.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import cellgraph as cg  # noqa: E402

GOAL = 0.98
PUBLISHED = {
    "model": "SVC(gamma=0.001), scikit-learn example 'Recognizing hand-written "
    "digits' (50/50 unshuffled split)",
    "accuracy": 0.97,
}
FULL = {"epochs": 30, "units": 64}
QUICK = {"epochs": 1, "units": 8, "size": 200}


def load_data(seed: int, size: int | None = None):
    """Rows `(n, 8, 8)` in [0, 1] and labels, split 75/25 (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    labels = digits.target.astype("int32")
    if size is not None:
        images, labels = images[:size], labels[:size]
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, stratify=labels, random_state=seed
    )
    return (x_train, y_train), (x_test, y_test)


def shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shifts each image by -1, 0 or 1 pixel along each axis (zeros enter)."""
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, (2, n))
    out = np.empty_like(images)
    for i in range(n):
        out[i] = padded[i, dy[i] : dy[i] + height, dx[i] : dx[i] + width]
    return out


class ShiftedDigits(keras.utils.PyDataset):
    """Every training image twice per epoch: as it is, and randomly shifted."""

    def __init__(self, images, labels, batch_size, seed, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(2 * len(self.images) / self.batch_size)

    def __getitem__(self, index):
        batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.epoch_x[batch], self.epoch_y[batch]

    def on_epoch_end(self):
        x = np.concatenate([self.images, shift(self.images, self.rng)])
        y = np.concatenate([self.labels, self.labels])
        order = self.rng.permutation(len(x))
        self.epoch_x, self.epoch_y = x[order], y[order]


def mgu_rows(units: int, features: int = 8) -> cg.RecurrentModel:
    """A minimal gated unit written as a one-step graph; returns every step."""
    x_t = keras.Input((features,), name="row")
    h_tm1 = keras.Input((units,), name="h_tm1")
    gate = layers.Activation("sigmoid", name="forget_gate")(
        layers.Add()(
            [layers.Dense(units)(x_t), layers.Dense(units, use_bias=False)(h_tm1)]
        )
    )
    reset_h = layers.Multiply()([gate, h_tm1])
    candidate = layers.Activation("tanh", name="candidate")(
        layers.Add()(
            [layers.Dense(units)(x_t), layers.Dense(units, use_bias=False)(reset_h)]
        )
    )
    step = layers.Multiply()([gate, layers.Subtract()([candidate, h_tm1])])
    h_t = layers.Add(name="h_t")([h_tm1, step])
    return cg.RecurrentModel(
        input=x_t,
        initial_states=[h_tm1],
        output=h_t,
        final_states=[h_t],
        return_sequences=True,
        name="mgu",
    )


def build_model(units: int) -> keras.Model:
    images = keras.Input((8, 8), name="rows")  # 8 steps of 8 pixels
    outputs = layers.Bidirectional(mgu_rows(units))(images)
    pooled = layers.Concatenate()(
        [layers.GlobalMaxPooling1D()(outputs), layers.GlobalAveragePooling1D()(outputs)]
    )
    pooled = layers.Dropout(0.2)(pooled)
    return keras.Model(images, layers.Dense(10, activation="softmax")(pooled))


def svc_reference(train, test) -> float:
    """Accuracy of scikit-learn's example classifier on the same split."""
    from sklearn.svm import SVC

    (x_train, y_train), (x_test, y_test) = train, test
    svc = SVC(gamma=0.001).fit(x_train.reshape(len(x_train), -1) * 16, y_train)
    return float(svc.score(x_test.reshape(len(x_test), -1) * 16, y_test))


def save_curves(history, path, title, goal, published):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], label="train")
    ax_loss.plot(epochs, history["val_loss"], label="test")
    ax_loss.set_ylabel("cross-entropy")
    ax_acc.plot(epochs, history["accuracy"], label="train")
    ax_acc.plot(epochs, history["val_accuracy"], label="test")
    ax_acc.axhline(goal, color="gray", linestyle=":", label=f"goal {goal:.0%}")
    ax_acc.axhline(
        published, color="black", linestyle="--", label=f"published {published:.0%}"
    )
    ax_acc.set_ylim(max(0.0, min(history["val_accuracy"]) - 0.05), 1.0)
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv=None) -> dict:
    """Trains and evaluates the model; returns the results (also results.json).

    Returns:
        A dict with `test_accuracy`, `test_loss`, `goal`, `published`,
        `svc_same_split`, `params`, the split sizes, `history` (per-epoch
        `loss`, `accuracy`, `val_loss`, `val_accuracy`, the `val_` ones on
        the test set), `train_seconds`, `seconds` and `plot`.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("digits_rows_out"))
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    epochs = args.epochs or mode["epochs"]
    units = args.units or mode["units"]
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    train, test = load_data(args.seed, mode.get("size"))
    data = ShiftedDigits(*train, batch_size=32, seed=args.seed)
    model = build_model(units)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=epochs * len(data)
    )
    model.compile(
        keras.optimizers.Adam(schedule),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=args.quick,  # a few batches: skip graph compilation
    )
    fit_start = time.perf_counter()
    history = model.fit(
        data, epochs=epochs, validation_data=test, verbose=0 if args.quick else 2
    ).history
    train_seconds = time.perf_counter() - fit_start
    test_loss, test_accuracy = model.evaluate(*test, verbose=0)
    svc = svc_reference(train, test)
    seconds = time.perf_counter() - start

    plot = args.out / "digits_rows.png"
    save_curves(
        history,
        plot,
        f"load_digits row by row, bidirectional MGU step graph ({units} units)",
        GOAL,
        PUBLISHED["accuracy"],
    )
    result = {
        "example": "digits_rows",
        "quick": bool(args.quick),
        "seed": args.seed,
        "epochs": epochs,
        "units": units,
        "params": model.count_params(),
        "train_size": len(train[0]),
        "test_size": len(test[0]),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "goal": GOAL,
        "published": PUBLISHED,
        "svc_same_split": svc,
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "train_seconds": round(train_seconds, 1),
        "seconds": round(seconds, 1),
        "plot": str(plot),
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| model | split | test accuracy |")
    print("| --- | --- | --- |")
    print(
        f"| cellgraph MGU, bidirectional, {units} units ({result['params']:,} "
        f"params) | 75/25 stratified, seed {args.seed} | **{test_accuracy:.2%}** |"
    )
    print(f"| SVC(gamma=0.001) | same split | {svc:.2%} |")
    print(f"| published: {PUBLISHED['model']} | 50/50 | {PUBLISHED['accuracy']:.0%} |")
    print(f"| goal | | {GOAL:.0%} |")
    print(f"\nTraining {train_seconds:.0f} s, total {seconds:.0f} s. Plot: {plot}")
    return result


if __name__ == "__main__":
    main()
