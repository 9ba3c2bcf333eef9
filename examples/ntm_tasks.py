"""NTM copy and associative recall (Graves et al. 2014) at the paper's settings.

"Neural Turing Machines", sections 4.1 and 4.3, with an `AddressableMemory`
of 128 slots of width 20 (the paper's memory size):

- `--task copy`: L random 8-bit vectors, one step with the delimiter
  channel on (9 input channels), then L blank steps during which the model
  outputs the L vectors again, in order (`2L + 1` steps). Training uses L in
  1..20; the tests use L = 20, 40 and **120**.
- `--task recall`: k items of three random 6-bit vectors, each item after
  one step of the item delimiter; then the query delimiter, a copy of one
  of the first k - 1 items, the query delimiter again, and three blank
  steps during which the model outputs the item that *followed* the query
  (8 input channels: 6 bits + 2 delimiters; `4k + 8` steps). Training uses
  k in 2..6; the test uses **k = 12**.

Only the output steps carry a loss (binary cross-entropy). The figure is
the paper's *bits of error per sequence*: output bits wrong after
thresholding at 0.5, summed per sequence, averaged over the test set.

The memory model is the step graph below: an LSTM controller reads
`[x_t, read_tm1]`, its output drives one read and one write head (content
and location addressing, erase/add writes), the read comes back at the next
step as a state, and the step output is `sigmoid(Dense([h_t, read_t]))`.
The memory starts at a small constant (1e-6) and both weightings on slot 0.
The baseline is an LSTM with at least as many weights, trained on the same
data in the same run; the best epoch of each is picked on a validation split
at the training lengths.

    python examples/ntm_tasks.py --task copy              # full run
    python examples/ntm_tasks.py --task recall --quick    # smoke run

Figures of the full runs: docs/memory_tasks.md.
"""

from __future__ import annotations

import keras
import numpy as np

import cellgraph as cg
from cellgraph.systems import AddressableMemory

try:  # run as a script (examples/ on sys.path) or loaded by the tests
    import memory_common as common
except ImportError:  # pragma: no cover
    from examples import memory_common as common


def build_memory_model(
    inputs: int, outputs: int, units: int, slots: int, width: int
) -> keras.Model:
    """The LSTM controller + `AddressableMemory` model, not compiled."""
    memory = AddressableMemory(slots=slots, width=width, name="memory")
    x_t = keras.Input((inputs,), name="x_t")
    read_tm1 = keras.Input((memory.read_size,), name="read_tm1")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    memory_tm1 = memory.initial_state_inputs()
    controller_in = keras.layers.Concatenate()([x_t, read_tm1])
    h_t, _, c_t = cg.cells.LSTMCell(units, name="controller")(
        [controller_in, h_tm1, c_tm1]
    )
    read_t, *memory_t = memory([h_t, *memory_tm1])
    y_t = keras.layers.Dense(outputs, activation="sigmoid", name="bits")(
        keras.layers.Concatenate()([h_t, read_t])
    )
    _, read_weights, write_weights = memory.state_initializers()
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[read_tm1, h_tm1, c_tm1, *memory_tm1],
        final_states=[read_t, h_t, c_t, *memory_t],
        state_initializer=[
            None,
            None,
            None,
            keras.initializers.Constant(1e-6),
            read_weights,
            write_weights,
        ],
        return_sequences=True,
        name="ntm_rnn",
    )
    sequence = keras.Input((None, inputs), name="sequence")
    return keras.Model(sequence, rnn(sequence), name="ntm")


COPY_BITS = 8
RECALL_BITS = 6
ITEM_STEPS = 3  # vectors per recall item
LEARNING_RATE = 3e-3

FULL = {
    "copy": {
        "train_lengths": (1, 20),
        "test_lengths": (20, 40, 120),
        "train": 16384,
        "epochs": 20,
        "budget": 540,
    },
    "recall": {
        "train_lengths": (2, 6),
        "test_lengths": (12,),
        "train": 16384,
        "epochs": 20,
        "budget": 540,
    },
}
SHARED_FULL = {
    "valid": 500,
    "test": 1000,
    "patience": 4,
    "units": 100,
    "slots": 128,
    "width": 20,
    "batch": 32,
    "multiple": 16,
    "jit": True,
}
# The smoke run keeps the tasks' lengths but not their size or budget.
QUICK = {
    "copy": {"train_lengths": (1, 5), "test_lengths": (5, 10)},
    "recall": {"train_lengths": (2, 3), "test_lengths": (4,)},
}
SHARED_QUICK = {
    "train": 512,
    "valid": 64,
    "test": 64,
    "epochs": 10,
    "units": 32,
    "slots": 16,
    "width": 8,
    "batch": 32,
    "multiple": 64,  # one batch shape: tracing each shape costs seconds
    "jit": False,
}


def _check_range(name: str, value: tuple[int, int], low: int) -> None:
    if not low <= value[0] <= value[1]:
        raise ValueError(
            f"Argument `{name}` must be (min, max) with {low} <= min <= max. "
            f"Received: {name}={value}"
        )


def make_copy_data(
    num: int, lengths: tuple[int, int], rng: np.random.Generator, bits: int = COPY_BITS
) -> dict[str, np.ndarray]:
    """Generates `num` copy examples, padded to `2 * max + 1` steps.

    Args:
        num: number of sequences.
        lengths: `(min, max)` number of vectors L, drawn uniformly.
        rng: NumPy random generator.
        bits: bits per vector.

    Returns:
        A dict: `inputs (num, T, bits + 1)` (the delimiter on the last
        channel); `targets (num, T, bits)`, the vectors at steps
        `L + 1 .. 2L`; `weights (num, T)`, 1 exactly there; `steps (num,)`.
    """
    _check_range("lengths", lengths, 1)
    steps = 2 * lengths[1] + 1
    lengths_ = rng.integers(lengths[0], lengths[1] + 1, num)
    inputs = np.zeros((num, steps, bits + 1), "float32")
    targets = np.zeros((num, steps, bits), "float32")
    weights = np.zeros((num, steps), "float32")
    for i, length in enumerate(lengths_):
        seq = rng.integers(0, 2, (length, bits)).astype("float32")
        inputs[i, :length, :bits] = seq
        inputs[i, length, bits] = 1.0
        targets[i, length + 1 : 2 * length + 1] = seq
        weights[i, length + 1 : 2 * length + 1] = 1.0
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "steps": 2 * lengths_ + 1,
    }


def recall_steps(items: int) -> int:
    """Steps of a recall sequence of `items` items: `4k + 8`."""
    return (ITEM_STEPS + 1) * items + 2 * (ITEM_STEPS + 1)


def make_recall_data(
    num: int, items: tuple[int, int], rng: np.random.Generator, bits: int = RECALL_BITS
) -> dict[str, np.ndarray]:
    """Generates `num` associative-recall examples, padded to the longest.

    Layout of a sequence of k items (channels: `bits` data bits, then the
    item delimiter, then the query delimiter): k times `[item delimiter,
    v1, v2, v3]`, then `[query delimiter, q1, q2, q3, query delimiter]`,
    then three blank steps whose targets are the item after the query.

    Args:
        num: number of sequences.
        items: `(min, max)` number of items k (min >= 2), drawn uniformly.
        rng: NumPy random generator.
        bits: bits per vector.

    Returns:
        A dict: `inputs (num, T, bits + 2)`, `targets (num, T, bits)`,
        `weights (num, T)` (1 on the three answer steps), `steps (num,)`,
        `queries (num,)` (the index of the queried item).
    """
    _check_range("items", items, 2)
    steps = recall_steps(items[1])
    counts = rng.integers(items[0], items[1] + 1, num)
    inputs = np.zeros((num, steps, bits + 2), "float32")
    targets = np.zeros((num, steps, bits), "float32")
    weights = np.zeros((num, steps), "float32")
    queries = np.zeros(num, "int64")
    block = ITEM_STEPS + 1
    for i, k in enumerate(counts):
        data = rng.integers(0, 2, (k, ITEM_STEPS, bits)).astype("float32")
        for j in range(k):
            inputs[i, block * j, bits] = 1.0
            inputs[i, block * j + 1 : block * (j + 1), :bits] = data[j]
        query = rng.integers(0, k - 1)
        start = block * k
        inputs[i, start, bits + 1] = 1.0
        inputs[i, start + 1 : start + block, :bits] = data[query]
        inputs[i, start + block, bits + 1] = 1.0
        answer = slice(start + block + 1, start + block + 1 + ITEM_STEPS)
        targets[i, answer] = data[query + 1]
        weights[i, answer] = 1.0
        queries[i] = query
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "steps": np.array([recall_steps(k) for k in counts]),
        "queries": queries,
    }


def score(outputs, data) -> dict:
    """`bits_error`: wrong output bits per sequence; `exact`: sequences right."""
    wrong = (np.asarray(outputs) > 0.5) != (data["targets"] > 0.5)
    wrong = np.sum(wrong & (data["weights"] > 0)[..., None], axis=(1, 2))
    return {"bits_error": float(np.mean(wrong)), "exact": float(np.mean(wrong == 0))}


def _exact_key(outputs, data) -> dict:
    # The best epoch has the fewest bits of error (higher is better).
    result = score(outputs, data)
    return {**result, "neg_bits_error": -result["bits_error"]}


def add_arguments(parser) -> None:
    parser.add_argument("--task", choices=("copy", "recall"), default="copy")


def main(argv=None) -> dict:
    """Trains the NTM model and the LSTM baseline; returns the results."""
    args = common.parse_args(__doc__.splitlines()[0], argv, add_arguments)
    task = args.task
    if args.quick:
        cfg = common.configure(args, {}, {**SHARED_QUICK, **QUICK[task]})
    else:
        cfg = common.configure(args, {**SHARED_FULL, **FULL[task]}, {})
    rng = common.seed_everything(args.seed)
    if task == "copy":
        inputs, bits = COPY_BITS + 1, COPY_BITS
        train = make_copy_data(cfg["train"], cfg["train_lengths"], rng)
        valid = make_copy_data(cfg["valid"], cfg["train_lengths"], rng)
        tests = {
            f"L{n}": make_copy_data(cfg["test"], (n, n), rng)
            for n in cfg["test_lengths"]
        }
    else:
        inputs, bits = RECALL_BITS + 2, RECALL_BITS
        train = make_recall_data(cfg["train"], cfg["train_lengths"], rng)
        valid = make_recall_data(cfg["valid"], cfg["train_lengths"], rng)
        tests = {
            f"k{n}": make_recall_data(cfg["test"], (n, n), rng)
            for n in cfg["test_lengths"]
        }
    memory = build_memory_model(inputs, bits, cfg["units"], cfg["slots"], cfg["width"])
    lstm_units = common.lstm_units_for(memory.count_params(), inputs, bits)
    models = {
        "ntm": (memory, cfg["units"]),
        "lstm": (common.lstm_baseline(inputs, bits, lstm_units, "sigmoid"), lstm_units),
    }
    common.compile_models(models, "binary_crossentropy", cfg, train, LEARNING_RATE)
    results = {
        "task": task,
        "quick": args.quick,
        "seed": args.seed,
        "config": common.run_config(cfg),
    }
    results.update(
        common.compare(
            models,
            train,
            valid,
            tests,
            _exact_key,
            "neg_bits_error",
            cfg,
            bits,
            builders={  # fresh weights for --restarts
                "ntm": lambda: build_memory_model(
                    inputs, bits, cfg["units"], cfg["slots"], cfg["width"]
                )
            },
        )
    )
    return common.report(results, args.out)


if __name__ == "__main__":
    main()
