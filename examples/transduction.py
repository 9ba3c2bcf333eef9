"""Transduction (Grefenstette et al. 2015): reversal with a Stack, copy with a Queue.

"Learning to Transduce with Unbounded Memory", section 5: a sequence of L
random symbols (vocabulary 128, one-hot), one separator step, then L blank
steps during which the model emits the symbols reversed (`--task reverse`,
with a `Stack`) or in order (`--task copy`, with a `Queue`). Only the L
blank steps carry a loss, so a sequence has `2L + 1` steps. Training uses
L in 8..64; the test set uses L in **65..128**, lengths no training
sequence reaches. Figures: coarse accuracy (sequences right in full) and
fine accuracy (target symbols right).

The memory model is the step graph below: an LSTM controller reads
`[x_t, read_tm1]`, drives the system (push value, push and pop strengths),
and the system's read comes back at the next step as a state. The system's
buffer shifts by one slot per step, so its capacity counts steps: training
uses capacity `2 * 64 + 1`, the test a copy of the model with capacity
`2 * 128 + 1` (capacity holds no weights; the weights are copied). The
baseline is an LSTM with at least as many weights, trained on the same data
in the same run; the best epoch of each is picked on a validation split at
the training lengths. `--push-bias`, `--pop-bias` and `--lr` default per
task (`TASK_DEFAULTS`, chosen on the validation split): the copy's queue
starts with push ~0.88 and pop ~0.05 and trains at 1e-3.

    python examples/transduction.py --task reverse          # full run
    python examples/transduction.py --task copy --quick     # smoke run

Figures of the full runs: docs/memory_tasks.md.
"""

from __future__ import annotations

import keras
import numpy as np

import cellgraph as cg
from cellgraph.systems import Queue, Stack

try:  # run as a script (examples/ on sys.path) or loaded by the tests
    import memory_common as common
except ImportError:  # pragma: no cover
    from examples import memory_common as common

SYSTEMS = {"reverse": Stack, "copy": Queue}


def build_memory_model(
    task: str,
    vocab: int,
    units: int,
    width: int,
    capacity: int,
    push_bias: float = 0.0,
    pop_bias: float = 0.0,
) -> keras.Model:
    """The controller + `Stack` (reverse) or `Queue` (copy) model, not compiled.

    `push_bias` and `pop_bias` start the projection's biases of the push and
    pop strengths (before the sigmoid) there instead of at 0.
    """
    memory = SYSTEMS[task](
        width=width,
        capacity=capacity,
        bias_initializer=ControlBias(width, push_bias, pop_bias),
        name="memory",
    )
    x_t = keras.Input((vocab + 1,), name="x_t")  # symbols + separator
    read_tm1 = keras.Input((memory.read_size,), name="read_tm1")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    memory_tm1 = memory.initial_state_inputs()
    controller_in = keras.layers.Concatenate()([x_t, read_tm1])
    h_t, _, c_t = cg.cells.LSTMCell(units, name="controller")(
        [controller_in, h_tm1, c_tm1]
    )
    read_t, *memory_t = memory([h_t, *memory_tm1])
    y_t = keras.layers.Dense(vocab, activation="softmax", name="symbol")(
        keras.layers.Concatenate()([h_t, read_t])
    )
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[read_tm1, h_tm1, c_tm1, *memory_tm1],
        final_states=[read_t, h_t, c_t, *memory_t],
        state_initializer=[None, None, None, *memory.state_initializers()],
        return_sequences=True,
        name="memory_rnn",
    )
    sequence = keras.Input((None, vocab + 1), name="sequence")
    return keras.Model(sequence, rnn(sequence), name=f"{task}_{memory.name}")


class ControlBias(keras.initializers.Initializer):
    """Bias of a push/pop projection: 0 on the value, given push and pop biases."""

    def __init__(self, width: int, push: float = 0.0, pop: float = 0.0):
        self.width, self.push, self.pop = width, float(push), float(pop)

    def __call__(self, shape, dtype=None):
        bias = np.zeros(shape, "float32")
        bias[self.width :] = [self.push, self.pop]
        return keras.ops.convert_to_tensor(bias, dtype=dtype)

    def get_config(self):
        return {"width": self.width, "push": self.push, "pop": self.pop}


VOCAB = 128
TRAIN_LENGTHS = (8, 64)
TEST_LENGTHS = (65, 128)
LEARNING_RATE = 3e-3
# Each task's defaults of --push-bias, --pop-bias and --lr, chosen on the
# validation split (docs/memory_tasks.md): the queue copy learns only when
# its strengths start at push ~0.88 and pop ~0.05, at a lower learning rate.
TASK_DEFAULTS = {
    "reverse": {"push_bias": 0.0, "pop_bias": 0.0, "lr": LEARNING_RATE},
    "copy": {"push_bias": 2.0, "pop_bias": -3.0, "lr": 1e-3},
}

FULL = {
    "vocab": VOCAB,
    "train_lengths": TRAIN_LENGTHS,
    "test_lengths": TEST_LENGTHS,
    "train": 12288,
    "valid": 500,
    "test": 1000,
    "epochs": 12,
    "patience": 3,
    "budget": 540,
    "units": 64,
    "width": 32,
    "batch": 64,
    "multiple": 32,
    "jit": True,
}
# The smoke run keeps the task but shortens it (vocabulary 8, L 2..8, test
# L 9..16) so that a few seconds of training already beat the trivial baseline.
QUICK = {
    "vocab": 8,
    "train_lengths": (2, 8),
    "test_lengths": (9, 16),
    "train": 1024,
    "valid": 128,
    "test": 128,
    "epochs": 10,
    "units": 32,
    "width": 8,
    "batch": 32,
    "multiple": 64,  # one batch shape: tracing each shape costs seconds
    "jit": False,
}


def steps_for(length: int) -> int:
    """Steps of a sequence of `length` symbols: `2L + 1`."""
    return 2 * length + 1


def make_data(
    num: int,
    lengths: tuple[int, int],
    rng: np.random.Generator,
    task: str = "reverse",
    vocab: int = VOCAB,
) -> dict[str, np.ndarray]:
    """Generates `num` transduction examples, padded to `2 * max + 1` steps.

    Args:
        num: number of sequences.
        lengths: `(min, max)` number of symbols L, drawn uniformly (both
            included).
        rng: NumPy random generator.
        task: `"reverse"` (targets reversed) or `"copy"` (in order).
        vocab: number of symbols.

    Returns:
        A dict: `inputs (num, T, vocab + 1)` one-hot symbols, the separator
        on channel `vocab`, blank steps all zeros; `targets (num, T)` the
        expected symbols at steps `L + 1 .. 2L` (0 elsewhere); `weights`
        1 exactly there; `steps (num,)` = `2L + 1`; `lengths (num,)` = L.
    """
    low, high = lengths
    if not 1 <= low <= high:
        raise ValueError(
            f"Argument `lengths` must be (min, max) with 1 <= min <= max. "
            f"Received: lengths={lengths}"
        )
    if task not in SYSTEMS:
        raise ValueError(
            f"Argument `task` must be one of {sorted(SYSTEMS)}. Received: task={task!r}"
        )
    steps = steps_for(high)
    lengths_ = rng.integers(low, high + 1, num)
    inputs = np.zeros((num, steps, vocab + 1), "float32")
    targets = np.zeros((num, steps), "int64")
    weights = np.zeros((num, steps), "float32")
    for i, length in enumerate(lengths_):
        seq = rng.integers(0, vocab, length)
        inputs[i, np.arange(length), seq] = 1.0
        inputs[i, length, vocab] = 1.0
        targets[i, length + 1 : 2 * length + 1] = (
            seq[::-1] if task == "reverse" else seq
        )
        weights[i, length + 1 : 2 * length + 1] = 1.0
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "steps": 2 * lengths_ + 1,
        "lengths": lengths_,
    }


def score(outputs, data) -> dict:
    """`coarse` (sequences right in full) and `fine` (scored symbols right)."""
    right = np.asarray(outputs).argmax(-1) == data["targets"]
    scored = data["weights"] > 0
    return {
        "coarse": float(np.mean(np.all(right | ~scored, axis=1))),
        "fine": float(np.sum(right & scored) / np.sum(scored)),
    }


def per_task(key: str) -> str:
    """`"reverse: 0; copy: 2"`: each task's default of `key`, for `--help`."""
    return "; ".join(f"{task}: {v[key]:g}" for task, v in TASK_DEFAULTS.items())


def add_arguments(parser) -> None:
    parser.add_argument("--task", choices=sorted(SYSTEMS), default="reverse")
    parser.add_argument(
        "--vocab", type=int, default=None, help=f"symbols (full run: {VOCAB})"
    )
    parser.add_argument(
        "--push-bias",
        type=float,
        default=None,
        help="initial push-strength bias, before the sigmoid (default per task: "
        f"{per_task('push_bias')})",
    )
    parser.add_argument(
        "--pop-bias",
        type=float,
        default=None,
        help=f"initial pop-strength bias (default per task: {per_task('pop_bias')})",
    )
    parser.epilog = f"--lr defaults per task: {per_task('lr')}."


def main(argv=None) -> dict:
    """Trains the memory model and the LSTM baseline; returns the results."""
    args = common.parse_args(__doc__.splitlines()[0], argv, add_arguments)
    cfg = common.configure(args, FULL, QUICK)
    if args.vocab is not None:
        cfg["vocab"] = args.vocab
    task_defaults = TASK_DEFAULTS[args.task]
    push_bias = task_defaults["push_bias"] if args.push_bias is None else args.push_bias
    pop_bias = task_defaults["pop_bias"] if args.pop_bias is None else args.pop_bias
    cfg.setdefault("lr", task_defaults["lr"])
    rng = common.seed_everything(args.seed)
    vocab = cfg["vocab"]
    train = make_data(cfg["train"], cfg["train_lengths"], rng, args.task, vocab)
    valid = make_data(cfg["valid"], cfg["train_lengths"], rng, args.task, vocab)
    test = make_data(cfg["test"], cfg["test_lengths"], rng, args.task, vocab)

    sizes = (vocab, cfg["units"], cfg["width"])
    biases = (push_bias, pop_bias)
    memory = build_memory_model(
        args.task, *sizes, steps_for(cfg["train_lengths"][1]), *biases
    )
    evaluator = build_memory_model(
        args.task, *sizes, steps_for(cfg["test_lengths"][1]), *biases
    )
    lstm_units = common.lstm_units_for(memory.count_params(), vocab + 1, vocab)
    models = {
        "memory": (memory, cfg["units"]),
        "lstm": (common.lstm_baseline(vocab + 1, vocab, lstm_units), lstm_units),
    }
    common.compile_models(
        models, "sparse_categorical_crossentropy", cfg, train, LEARNING_RATE
    )
    results = {
        "task": args.task,
        "system": SYSTEMS[args.task].__name__,
        "push_bias": push_bias,
        "pop_bias": pop_bias,
        "quick": args.quick,
        "seed": args.seed,
        "config": common.run_config(cfg),
    }
    results.update(
        common.compare(
            models,
            train,
            valid,
            {"test": test},
            score,
            "coarse",
            cfg,
            vocab,
            evaluators={"memory": evaluator},
            builders={  # fresh weights for --restarts
                "memory": lambda: build_memory_model(
                    args.task, *sizes, steps_for(cfg["train_lengths"][1]), *biases
                )
            },
        )
    )
    return common.report(results, args.out)


if __name__ == "__main__":
    main()
