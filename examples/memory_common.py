"""Shared code of the memory-task examples: CLI, batching, training, scoring.

The memory examples (`transduction.py`, `ntm_tasks.py`, `dyck2.py`,
`anbn.py`) each define their own data generator, step graph and score; this
module holds what they share:

- the command line (`--quick`, `--seed`, `--epochs`, `--train`, `--units`,
  `--budget`, `--verbose`, `--no-jit`, `--out`) and the full/quick configs;
- the LSTM baseline step graph and the unit count that gives it at least as
  many weights as the memory model;
- a training loop over length buckets (sequences of similar length share a
  batch, cut to a multiple of `multiple` steps, so short sequences do not
  pay for the longest one) that keeps the weights of the best epoch on a
  validation split at the *training* lengths;
- the weighted loss (mean over the scored steps only) and the loss of the
  best constant predictor, the trivial baseline every quick run must beat.

A data set is a dict of NumPy arrays: `inputs (N, T, F)` float32,
`targets (N, T)` int64 (softmax tasks) or `(N, T, K)` float32 (sigmoid
tasks), `weights (N, T)` float32 (1 on the scored steps) and `steps (N,)`,
the number of steps each sequence really uses (the rest is zero padding at
the end, which a causal model sees only after its scored steps).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cellgraph as cg  # noqa: E402

EPSILON = 1e-7
# the options a config holds and the command line may override
CONFIG_OPTIONS = ("epochs", "train", "units", "budget", "width", "lr", "patience")


# -- command line --------------------------------------------------------------
def parse_args(
    description: str,
    argv=None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """Parses the options every memory example takes.

    Args:
        description: the `--help` description (the module docstring's first
            line).
        argv: the arguments (`None`: `sys.argv[1:]`).
        add_arguments: an optional callable adding the example's own options.

    Returns:
        The parsed namespace; `--epochs`, `--train`, `--units`, `--budget`,
        `--width`, `--lr`, `--patience`, `--restarts` and `--restart-epochs`
        are `None` unless given (the config decides).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="most epochs")
    parser.add_argument("--train", type=int, default=None, help="training sequences")
    parser.add_argument("--units", type=int, default=None, help="controller units")
    parser.add_argument(
        "--budget", type=int, default=None, help="most training seconds per model"
    )
    parser.add_argument("--width", type=int, default=None, help="memory width")
    parser.add_argument(
        "--patience", type=int, default=None, help="epochs without a better one"
    )
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument(
        "--decay", action="store_true", help="cosine-decay the learning rate"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="train the memory model only"
    )
    parser.add_argument(
        "--restarts",
        type=int,
        default=None,
        help="random restarts of the memory model (seeds seed, seed+1, ...): "
        "each trains --restart-epochs epochs, the best on the validation "
        "split trains on to --epochs",
    )
    parser.add_argument(
        "--restart-epochs", type=int, default=None, help="epochs of each restart"
    )
    parser.add_argument("--verbose", type=int, default=None, help="0: quiet")
    parser.add_argument("--no-jit", action="store_true", help="no XLA compilation")
    parser.add_argument("--out", default=None, help="also write the results here")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    for name in (*CONFIG_OPTIONS, "restarts", "restart_epochs"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            flag = name.replace("_", "-")
            parser.error(f"argument --{flag}: must be >= 1 (got {value})")
    return args


def configure(args: argparse.Namespace, full: dict, quick: dict) -> dict:
    """The run's config: `quick` or `full`, overridden by the command line.

    `cfg["lr"]` (if set) replaces the example's learning rate, `cfg["decay"]`
    turns on the cosine decay, `cfg["baseline"]` is False with
    `--no-baseline` (exploratory runs of the memory model alone).
    `cfg["restarts"]` is 1 unless set; with more, `cfg["restart_epochs"]`
    defaults to a tenth of the epochs (see `train_with_restarts`).
    """
    cfg = dict(quick if args.quick else full)
    for name in (*CONFIG_OPTIONS, "restarts", "restart_epochs"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    cfg.setdefault("restarts", 1)
    if cfg["restarts"] > 1:
        cfg.setdefault("restart_epochs", max(1, cfg["epochs"] // 10))
        if args.restart_epochs is None:  # the config's, for fewer --epochs
            cfg["restart_epochs"] = min(cfg["restart_epochs"], cfg["epochs"])
        if cfg["restart_epochs"] > cfg["epochs"]:
            raise ValueError(
                f"--restart-epochs must be at most --epochs. Received: "
                f"restart_epochs={cfg['restart_epochs']}, epochs={cfg['epochs']}"
            )
    cfg["decay"] = cfg.get("decay", False) or args.decay
    cfg["baseline"] = not args.no_baseline
    cfg["jit"] = cfg.get("jit", False) and not args.no_jit
    cfg["verbose"] = args.verbose if args.verbose is not None else int(not args.quick)
    cfg["seed"] = args.seed
    return cfg


# -- the LSTM baseline -----------------------------------------------------------
def lstm_params(inputs: int, units: int, outputs: int) -> int:
    """Weights of `lstm_baseline(inputs, outputs, units)`."""
    return 4 * (inputs + units + 1) * units + (units + 1) * outputs


def lstm_units_for(params: int, inputs: int, outputs: int) -> int:
    """The smallest LSTM baseline with at least `params` weights."""
    units = 1
    while lstm_params(inputs, units, outputs) < params:
        units += 1
    return units


def lstm_baseline(
    inputs: int, outputs: int, units: int, activation: str = "softmax"
) -> keras.Model:
    """The baseline: `x_t -> LSTMCell(units) -> Dense(outputs)`, not compiled."""
    x_t = keras.Input((inputs,), name="x_t")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    h_t, _, c_t = cg.cells.LSTMCell(units, name="lstm")([x_t, h_tm1, c_tm1])
    y_t = keras.layers.Dense(outputs, activation=activation, name="output")(h_t)
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        return_sequences=True,
        name="lstm_rnn",
    )
    sequence = keras.Input((None, inputs), name="sequence")
    return keras.Model(sequence, rnn(sequence), name="lstm")


@keras.saving.register_keras_serializable(package="memory_examples")
class StackActions(keras.layers.Layer):
    """Push and pop strengths `[d, u]` of a stack from a controller vector.

    `"sigmoid"`: a `Dense(2)` and a sigmoid (independent d and u); `"softmax"`:
    a `Dense(3)` and a softmax over push, pop and no-op, of which `[p(push),
    p(pop)]` are returned (as `Stack(actions="softmax")` does). The logits
    are divided by `temperature`, a non-trainable weight (1 at first) that a
    training schedule may lower to sharpen the strengths towards 0 and 1.
    With `noise > 0`, Gaussian noise of that standard deviation is added to
    the logits in training (at every step): strengths that are not
    saturated then vary from step to step, which pushes training towards
    logits far from 0, i.e. strengths near 0 and 1.
    """

    def __init__(
        self, actions: str = "sigmoid", noise: float = 0.0, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        if actions not in ("sigmoid", "softmax"):
            raise ValueError(
                f"Argument `actions` must be 'sigmoid' or 'softmax'. "
                f"Received: actions={actions!r}"
            )
        self.actions = actions
        self.noise = float(noise)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if noise else None
        self.dense = keras.layers.Dense(
            3 if actions == "softmax" else 2, name="logits", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.temperature = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="temperature"
        )

    def call(self, inputs, training=None):
        logits = self.dense(inputs) / keras.ops.cast(self.temperature, inputs.dtype)
        if training and self.noise:
            logits = logits + keras.random.normal(
                keras.ops.shape(logits),
                stddev=self.noise,
                dtype=logits.dtype,
                seed=self.seed_generator,
            )
        if self.actions == "softmax":
            return keras.ops.softmax(logits, axis=-1)[:, :2]
        return keras.ops.sigmoid(logits)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)

    def get_config(self):
        return {
            **super().get_config(),
            "actions": self.actions,
            "noise": self.noise,
            "seed": self.seed,
        }


def set_temperature(model: keras.Model, temperature: float) -> int:
    """Sets the `temperature` of every `StackActions` of a model; returns how many."""
    count = 0
    for variable in model.non_trainable_variables:
        if variable.name == "temperature":
            variable.assign(temperature)
            count += 1
    return count


def temperature_schedule(final: float, epochs: int):
    """A `fit` schedule lowering `StackActions` temperatures geometrically.

    The temperature is 1 in the first epoch and `final` in epoch `epochs`
    (and after): `final ** ((epoch - 1) / (epochs - 1))`.
    """
    if not 0 < final <= 1:
        raise ValueError(
            f"The final temperature must be in (0, 1]. Received: final={final}"
        )

    def schedule(model: keras.Model, epoch: int) -> None:
        fraction = min(1.0, (epoch - 1) / max(1, epochs - 1))
        if not set_temperature(model, final**fraction):
            raise ValueError(f"Model {model.name!r} has no StackActions temperature")

    return schedule


def stack_control(
    width: int, x_t, h_t, actions: str = "sigmoid", noise: float = 0.0, seed=None
):
    """The raw control `[value, d, u]` of a `Stack(project=False)`.

    The pushed value is a learned function of this step's input symbol only
    (`Dense(width, tanh)` of `x_t`), the strengths come from the controller
    (`StackActions` of `h_t`): the stack can then carry nothing of the
    controller's state but *which* symbols it pushed and popped. `noise`
    and `seed`: see `StackActions`.
    """
    value = keras.layers.Dense(width, activation="tanh", name="push_value")(x_t)
    strengths = StackActions(actions, noise, seed, name="actions")(h_t)
    return keras.layers.Concatenate(name="stack_control")([value, strengths])


def add_stack_arguments(
    parser,
    round_default: str,
    controller_default: str = "lstm",
    push_value_default: str = "controller",
) -> None:
    """The `Stack` model's flags shared by dyck2.py and anbn.py.

    Args:
        parser: the example's `argparse.ArgumentParser`.
        round_default, controller_default, push_value_default: the defaults
            of `--round`, `--controller` and `--push-value` (each example's
            are chosen on its validation split, docs/memory_tasks.md).
    """
    parser.add_argument(
        "--controller",
        choices=("lstm", "dense"),
        default=controller_default,
        help="the controller: an LSTM, or a stateless Dense layer (the stack "
        "is then the only memory)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="with --push-value input: Gaussian noise on the push/pop logits "
        "in training",
    )
    parser.add_argument(
        "--anneal",
        type=float,
        default=None,
        help="with --push-value input: lower the temperature of the push/pop "
        "logits geometrically from 1 to this over the epochs",
    )
    parser.add_argument(
        "--push-value",
        choices=("controller", "input"),
        default=push_value_default,
        help="what the pushed value is a function of: the controller's "
        "output h_t, or this step's input symbol x_t only",
    )
    parser.add_argument(
        "--actions",
        choices=("sigmoid", "softmax"),
        default="sigmoid",
        help="the stack's push/pop strengths: independent sigmoids, or one "
        "softmax over push, pop and no-op",
    )
    parser.add_argument(
        "--round",
        choices=("none", "test", "train"),
        default=round_default,
        help="round the stack's push/pop strengths to 0/1: never; in the "
        "validation and test copies only; also in training (straight through)",
    )


def compile_model(
    model: keras.Model,
    loss: str,
    learning_rate: float,
    jit: bool = False,
    decay_steps: int | None = None,
) -> keras.Model:
    """Adam with gradient clipping (norm 1); cosine decay to 5% if `decay_steps`."""
    rate = learning_rate
    if decay_steps:
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=decay_steps, alpha=0.05
        )
    model.compile(
        optimizer=keras.optimizers.Adam(rate, clipnorm=1.0),
        loss=loss,
        jit_compile=jit,
    )
    return model


# -- batches and training ----------------------------------------------------------


def compile_for(
    model: keras.Model, loss: str, cfg: dict, train, learning_rate: float
) -> keras.Model:
    """Compiles one model for the run (`compile_model` with the run's config).

    `cfg["lr"]`, when given, overrides the task's default `learning_rate`.
    """
    return compile_model(
        model,
        loss,
        cfg.get("lr", learning_rate),
        cfg["jit"],
        decay_steps=decay_steps(train, cfg),
    )


def compile_models(models: dict, loss: str, cfg: dict, train, learning_rate: float):
    """Compiles every model of `{name: (model, units)}` the same way (`compile_for`)."""
    for model, _ in models.values():
        compile_for(model, loss, cfg, train, learning_rate)


def run_config(cfg: dict) -> dict:
    """The run's configuration as recorded in the results (no verbosity)."""
    return {k: v for k, v in cfg.items() if k != "verbose"}


def length_batches(
    data: dict, batch_size: int, rng: np.random.Generator, multiple: int = 16
) -> list[tuple[np.ndarray, int]]:
    """One epoch of batches, each `(indices, steps)` from one length bucket.

    A sequence of `s` steps goes to the bucket of `ceil(s / multiple) *
    multiple` steps (at most the padded length); each bucket is shuffled and
    cut into batches, and the batches are shuffled. Few distinct batch shapes
    keep the number of compiled training functions small.
    """
    padded = data["inputs"].shape[1]
    buckets = np.minimum(-(-data["steps"] // multiple) * multiple, padded)
    batches = []
    for steps in np.unique(buckets):
        members = rng.permutation(np.flatnonzero(buckets == steps))
        for start in range(0, len(members), batch_size):
            batches.append((members[start : start + batch_size], int(steps)))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def decay_steps(train: dict, cfg: dict) -> int | None:
    """Training steps of the whole run if `cfg["decay"]` (for `compile_model`)."""
    if not cfg.get("decay"):
        return None
    batches = length_batches(
        train, cfg["batch"], np.random.default_rng(0), cfg.get("multiple", 16)
    )
    return cfg["epochs"] * len(batches)


def predict(model: keras.Model, inputs: np.ndarray, batch_size: int = 250):
    """The model's outputs as a NumPy array."""
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))


def weighted_loss(outputs, targets, weights) -> float:
    """Cross-entropy averaged over the scored steps only.

    Softmax outputs `(N, T, C)` with integer targets `(N, T)`, or sigmoid
    outputs `(N, T, K)` with 0/1 targets `(N, T, K)` (binary cross-entropy
    averaged over the K channels, as Keras computes it).
    """
    outputs = np.clip(np.asarray(outputs, "float64"), EPSILON, 1 - EPSILON)
    targets = np.asarray(targets)
    if targets.ndim == outputs.ndim - 1:
        picked = np.take_along_axis(outputs, targets[..., None], axis=-1)[..., 0]
        nll = -np.log(picked)
    else:
        nll = -np.mean(
            targets * np.log(outputs) + (1 - targets) * np.log(1 - outputs), axis=-1
        )
    weights = np.asarray(weights, "float64")
    return float(np.sum(nll * weights) / np.sum(weights))


def constant_outputs(train: dict, data: dict, classes: int) -> np.ndarray:
    """The best constant predictor's outputs on `data` (the trivial baseline).

    It always outputs the frequencies of the targets on the scored training
    steps: the class frequencies (softmax) or each channel's mean (sigmoid).
    """
    scored = train["weights"] > 0
    targets = train["targets"]
    if targets.ndim == 2:
        counts = np.bincount(targets[scored], minlength=classes)
        frequencies = counts / counts.sum()
    else:
        frequencies = targets[scored].mean(0)
    shape = (*data["weights"].shape, classes)
    return np.broadcast_to(frequencies.astype("float32"), shape)


def selection_key(val_score: dict, val_loss: float, primary) -> tuple:
    """What picks the best epoch and the best restart: higher is better.

    `primary` names a metric of `val_score`, or a tuple of them compared in
    order (a name with a leading `-` is one where lower is better); the
    validation loss breaks the remaining ties (lower is better).
    """
    names = (primary,) if isinstance(primary, str) else tuple(primary)
    key = [
        -val_score[name[1:]] if name.startswith("-") else val_score[name]
        for name in names
    ]
    return (*key, -val_loss)


class Training:
    """One model's training run, which can be continued (for restarts).

    After each epoch the model is scored on `valid` (the training lengths,
    fresh data) and the weights of the best epoch by `selection_key` are
    kept. With a `validator` (a model with the same weights layout, e.g. one
    whose stack rounds its strengths), the validator gets the weights and is
    scored instead of the model. `schedule(model, epoch)`, if given, runs
    before each epoch (e.g. to lower a temperature). `run(epochs)` trains up
    to epoch `epochs` in all, and stops early after `patience` epochs
    without a better one or at the end of the first epoch that ends past
    `budget` seconds (both counted over every `run` of this training);
    `restore()` then loads the best epoch's weights.
    """

    def __init__(
        self,
        model: keras.Model,
        train: dict,
        valid: dict,
        score: Callable[[np.ndarray, dict], dict],
        primary,
        batch_size: int,
        seed: int = 0,
        budget: float | None = None,
        patience: int | None = None,
        multiple: int = 16,
        verbose: int = 1,
        name: str = "model",
        validator: keras.Model | None = None,
        schedule: Callable[[keras.Model, int], None] | None = None,
    ):
        self.model, self.train, self.valid = model, train, valid
        self.score, self.primary = score, primary
        self.batch_size, self.seed, self.multiple = batch_size, seed, multiple
        self.budget, self.patience = budget, patience
        self.verbose, self.name = verbose, name
        self.validator, self.schedule = validator, schedule
        self.rng = np.random.default_rng(seed)
        self.history: list[dict] = []
        self.best_key, self.best_weights, self.best_epoch = None, None, 0
        self.best_score: dict = {}
        self.best_loss = float("nan")
        self.seconds = 0.0
        self.stopped = False

    def run(self, epochs: int) -> Training:
        """Trains until epoch `epochs` (in all) or an early stop; returns self."""
        train = self.train
        start = time.perf_counter() - self.seconds
        for epoch in range(len(self.history) + 1, epochs + 1):
            if self.stopped:
                break
            if self.schedule is not None:
                self.schedule(self.model, epoch)
            losses = []
            for indices, steps in length_batches(
                train, self.batch_size, self.rng, self.multiple
            ):
                loss = self.model.train_on_batch(
                    train["inputs"][indices, :steps],
                    train["targets"][indices, :steps],
                    sample_weight=train["weights"][indices, :steps],
                )
                losses.append(float(np.asarray(loss).reshape(-1)[0]))
            scored = self.model
            if self.validator is not None:
                self.validator.set_weights(self.model.get_weights())
                scored = self.validator
            outputs = predict(scored, self.valid["inputs"])
            val_loss = weighted_loss(
                outputs, self.valid["targets"], self.valid["weights"]
            )
            val_score = self.score(outputs, self.valid)
            self.seconds = time.perf_counter() - start
            row = {
                "epoch": epoch,
                "loss": round(float(np.mean(losses)), 6),
                "val_loss": round(val_loss, 6),
                **{f"val_{k}": round(v, 4) for k, v in val_score.items()},
                "seconds": round(self.seconds, 1),
            }
            self.history.append(row)
            if self.verbose:
                print(self.name, json.dumps(row), flush=True)
            key = selection_key(val_score, val_loss, self.primary)
            if self.best_key is None or key > self.best_key:
                self.best_key, self.best_epoch = key, epoch
                self.best_weights = self.model.get_weights()
                self.best_score, self.best_loss = val_score, val_loss
            if self.budget is not None and self.seconds > self.budget:
                self.stopped = True
            if self.patience is not None and epoch - self.best_epoch >= self.patience:
                self.stopped = True
        return self

    def restore(self) -> keras.Model:
        """Loads the best epoch's weights into the model; returns it."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        return self.model

    def summary(self) -> dict:
        """The run so far: `seconds`, `epochs`, `best_epoch`, `history`."""
        return {
            "seconds": round(self.seconds, 1),
            "epochs": len(self.history),
            "best_epoch": self.best_epoch,
            "history": self.history,
        }


def fit(
    model: keras.Model,
    train: dict,
    valid: dict,
    score: Callable[[np.ndarray, dict], dict],
    primary,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    budget: float | None = None,
    patience: int | None = None,
    multiple: int = 16,
    verbose: int = 1,
    name: str = "model",
    validator: keras.Model | None = None,
    schedule: Callable[[keras.Model, int], None] | None = None,
) -> dict:
    """Trains on length buckets; keeps the weights of the best validation epoch.

    See `Training` for the arguments. Training stops after `epochs` epochs,
    after `patience` epochs without a better one, or at the end of the
    first epoch that ends past `budget` seconds.

    Returns:
        A dict: `seconds` (training wall time, validation included),
        `epochs` (run), `best_epoch` (1-based), `history` (per epoch: train
        loss, validation loss, validation score, elapsed seconds).
    """
    training = Training(
        model,
        train,
        valid,
        score,
        primary,
        batch_size,
        seed,
        budget,
        patience,
        multiple,
        verbose,
        name,
        validator,
        schedule,
    )
    training.run(epochs).restore()
    return training.summary()


def pick_restart(keys: list[tuple]) -> int:
    """The index of the best restart: the highest `selection_key` (first on ties)."""
    if not keys:
        raise ValueError("Argument `keys` must hold at least one restart's key.")
    return max(range(len(keys)), key=lambda i: (keys[i], -i))


def train_with_restarts(
    build: Callable[[], keras.Model],
    model: keras.Model,
    restarts: int,
    restart_epochs: int,
    epochs: int,
    seed: int = 0,
    name: str = "model",
    **options,
) -> tuple[keras.Model, dict, list[dict]]:
    """Random restarts picked on the validation split, then one full run.

    Restart `k` (0-based) starts from initial weights drawn with seed
    `seed + k` and shuffles its batches with seed `seed + k`; the data are
    the same for all. Restart 0 starts from `model`'s own weights; restart
    `k >= 1` from those of `build()`, a fresh model of the same layout built
    after `keras.utils.set_random_seed(seed + k)`, copied into `model` (so
    that its compiled training function is reused), with the optimizer's
    state (step count, moments) set back to its initial values. Each trains
    `restart_epochs` epochs; the one with the best validation key over its
    epochs (`selection_key`, as for epochs: no test set takes part) gets its
    weights and optimizer state back and trains on to `epochs` epochs in
    all; its best epoch's weights are then loaded.

    Args:
        build: builds a fresh (uncompiled) model of `model`'s layout.
        model: the compiled model to train.
        restarts, restart_epochs, epochs: see above.
        seed: the run's seed.
        name: the model's name in the printed lines.
        **options: `Training`'s other arguments (`train`, `valid`, `score`,
            `primary`, `batch_size`, `budget`, `patience`, ...).

    Returns:
        `(model, summary, restart_rows)`: the trained model, its
        `Training.summary()` with `restart` and `seed` added, and per
        restart `{"restart", "seed", "best_epoch", "seconds", "val_loss",
        "val_<metric>"...}` after its `restart_epochs` epochs (its best
        epoch's validation figures).
    """
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    initial_optimizer = [v.numpy() for v in optimizer.variables]
    trainings, states, rows = [], [], []
    for k in range(restarts):
        if k > 0:
            keras.utils.set_random_seed(seed + k)
            model.set_weights(build().get_weights())
            for variable, value in zip(optimizer.variables, initial_optimizer):
                variable.assign(value)
        training = Training(model, seed=seed + k, name=f"{name}[{k}]", **options)
        training.run(restart_epochs)
        states.append((model.get_weights(), [v.numpy() for v in optimizer.variables]))
        row = {
            "restart": k,
            "seed": seed + k,
            "best_epoch": training.best_epoch,
            "seconds": round(training.seconds, 1),
            "val_loss": round(training.best_loss, 6),
            **{f"val_{m}": round(v, 4) for m, v in training.best_score.items()},
        }
        rows.append(row)
        trainings.append(training)
        if options.get("verbose", 1):
            print(f"{name} restart {json.dumps(row)}", flush=True)
    picked = pick_restart([t.best_key for t in trainings])
    if options.get("verbose", 1):
        print(
            f"{name}: picked restart {picked} (seed {seed + picked}) on the "
            f"validation split",
            flush=True,
        )
    weights, optimizer_values = states[picked]
    model.set_weights(weights)
    for variable, value in zip(optimizer.variables, optimizer_values):
        variable.assign(value)
    training = trainings[picked]
    training.run(epochs).restore()
    summary = {**training.summary(), "restart": picked, "seed": seed + picked}
    return model, summary, rows


def compare(
    models: dict[str, tuple[keras.Model, int]],
    train: dict,
    valid: dict,
    tests: dict[str, dict],
    score: Callable[[np.ndarray, dict], dict],
    primary: str,
    cfg: dict,
    classes: int,
    evaluators: dict[str, keras.Model] | None = None,
    validators: dict[str, keras.Model] | None = None,
    schedules: dict[str, Callable[[keras.Model, int], None]] | None = None,
    builders: dict[str, Callable[[], keras.Model]] | None = None,
) -> dict:
    """Trains each model the same way and scores it on every test set.

    Args:
        models: `{name: (compiled model, units)}`, trained in this order.
        train, valid: the training and validation data (training lengths).
        tests: `{name: data}`, the test sets (the lengths to generalise to).
        score: `score(outputs, data) -> {metric: value}`.
        primary: the metric that picks the best epoch.
        cfg: the run's config (`epochs`, `batch`, `seed`, `verbose`, and
            optionally `budget`, `patience`, `multiple`).
        classes: number of output classes/channels (for the trivial baseline).
        evaluators: optional `{name: model}` with the same weights layout,
            used instead of the trained model on the test sets (e.g. a
            memory of a larger capacity: capacities hold no weights).
        validators: optional `{name: model}` with the same weights layout,
            scored on `valid` instead of the trained model (after every
            epoch, to pick the best one, and at the end).
        schedules: optional `{name: schedule}`, see `fit`.
        builders: optional `{name: build}`, where `build()` returns a fresh
            model of the same layout: with `cfg["restarts"] > 1`
            such a model is trained with `train_with_restarts` (seeds
            `cfg["seed"]`, `+ 1`, ...; `cfg["restart_epochs"]` each; the
            best on `valid` trains on), the others as before.

    Returns:
        A flat dict of results: `{model}_{test}_{metric}`, `{model}_valid_
        {metric}`, `{model}_params`, `{model}_units`, `{model}_train_seconds`,
        `{model}_epochs`, `{model}_best_epoch`, the trivial baseline's
        `constant_valid_loss` and each model's `{model}_valid_loss`; for a
        model trained with restarts also `{model}_restarts` (one row per
        restart, see `train_with_restarts`), `{model}_picked_restart` and
        `{model}_picked_seed`.
    """
    results = {}
    evaluators = evaluators or {}
    validators = validators or {}
    schedules = schedules or {}
    builders = builders or {}
    restarts = cfg.get("restarts", 1)
    if not cfg.get("baseline", True):
        models = dict(list(models.items())[:1])
    constant = constant_outputs(train, valid, classes)
    results["constant_valid_loss"] = round(
        weighted_loss(constant, valid["targets"], valid["weights"]), 6
    )
    for test_name, data in tests.items():
        for metric, value in score(
            constant_outputs(train, data, classes), data
        ).items():
            results[f"constant_{test_name}_{metric}"] = value
    for name, (model, units) in models.items():
        if cfg["verbose"]:
            print(
                f"--- {name}: {units} units, {model.count_params()} weights", flush=True
            )
        options = {
            "train": train,
            "valid": valid,
            "score": score,
            "primary": primary,
            "batch_size": cfg["batch"],
            "budget": cfg.get("budget"),
            "patience": cfg.get("patience"),
            "multiple": cfg.get("multiple", 16),
            "verbose": cfg["verbose"],
            "validator": validators.get(name),
            "schedule": schedules.get(name),
        }
        if restarts > 1 and name in builders:
            model, run, rows = train_with_restarts(
                builders[name],
                model,
                restarts,
                cfg["restart_epochs"],
                cfg["epochs"],
                seed=cfg["seed"],
                name=name,
                **options,
            )
            results[f"{name}_restarts"] = rows
            results[f"{name}_picked_restart"] = run["restart"]
            results[f"{name}_picked_seed"] = run["seed"]
            results[f"{name}_restarts_seconds"] = round(
                sum(row["seconds"] for row in rows), 1
            )
        else:
            training = Training(model, seed=cfg["seed"], name=name, **options)
            model = training.run(cfg["epochs"]).restore()
            run = training.summary()
        results.update(
            {
                f"{name}_units": units,
                f"{name}_params": model.count_params(),
                f"{name}_train_seconds": run["seconds"],
                f"{name}_epochs": run["epochs"],
                f"{name}_best_epoch": run["best_epoch"],
            }
        )
        validator = validators.get(name, model)
        if validator is not model:
            validator.set_weights(model.get_weights())
        outputs = predict(validator, valid["inputs"])
        results[f"{name}_valid_loss"] = round(
            weighted_loss(outputs, valid["targets"], valid["weights"]), 6
        )
        for metric, value in score(outputs, valid).items():
            results[f"{name}_valid_{metric}"] = value
        evaluator = evaluators.get(name, model)
        if evaluator is not model:
            evaluator.set_weights(model.get_weights())
        for test_name, data in tests.items():
            outputs = predict(evaluator, data["inputs"])
            for metric, value in score(outputs, data).items():
                results[f"{name}_{test_name}_{metric}"] = value
        results[f"{name}_history"] = run["history"]
    return results


def report(results: dict, out: str | None = None) -> dict:
    """Prints the results as JSON (without the per-epoch histories); writes `out`."""
    summary = {k: v for k, v in results.items() if not k.endswith("_history")}
    print(json.dumps(summary, indent=1), flush=True)
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=1)
    return results


def seed_everything(seed: int) -> np.random.Generator:
    """Seeds Keras (and NumPy, Python) and returns a NumPy generator for the data."""
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)
