"""aⁿbⁿ counting (Joulin & Mikolov 2015) with a `Stack` superloop.

"Inferring Algorithmic Patterns with Stack-Augmented Recurrent Nets",
section 4.1: the string `a^n b^n` is read one symbol per step, and after
each symbol the model predicts the next one among `a`, `b` and the end of
the string. The first half is not predictable (another `a` or the first
`b`), but once the first `b` has been read the rest is: `n - 1` more `b`s,
then the end. A test string counts as right when its whole deterministic
part (those `n` predictions) is right. Training uses n in 1..20; the test
uses every n in **21..60**, one string each (there is only one string per
n). The loss covers every step.

The memory model is the step graph below: an LSTM controller reads
`[x_t, read_tm1]`, drives a `Stack` (push value, push and pop strengths),
and the step output reads the controller and this step's read (the top of
the stack after this step's push or pop). By default (`--round train`,
chosen on the validation split) the stack rounds its push and pop strengths
to 0 or 1, in training with a straight-through gradient
(`Stack(round_strengths=True)`); `--round none` is the plain continuous
stack. The full run makes 6 random restarts of 10 epochs (seeds
seed..seed+5, `--restarts`, `--restart-epochs`); the one best on the
validation split trains on to 30 epochs. The stack's buffer shifts by one
slot per step, so its capacity counts steps: 40 in training, 120 in a copy
of the model for the test (capacity holds no weights). The baseline is an
LSTM with at least as many weights, trained on the same data in the same
run. The validation split holds fresh strings at the training lengths,
which, as there is one string per n, are the training strings themselves:
it picks the best epoch and the best restart (by the strings right, then
the loss on the deterministic steps), and nothing sees the test lengths.

    python examples/anbn.py            # full run
    python examples/anbn.py --quick    # smoke run

Figures of the full run: docs/memory_tasks.md.
"""

from __future__ import annotations

import keras
import numpy as np

import cellgraph as cg
from cellgraph.systems import Stack

try:  # run as a script (examples/ on sys.path) or loaded by the tests
    import memory_common as common
except ImportError:  # pragma: no cover
    from examples import memory_common as common

A, B, END = 0, 1, 2  # input channels (a, b) and output classes (a, b, end)


def build_stack_model(
    units: int,
    width: int,
    capacity: int,
    readout: str = "both",
    init_scale: float = 1.0,
    round_strengths: bool = False,
    actions: str = "sigmoid",
    push_value: str = "controller",
    noise: float = 0.0,
    controller: str = "lstm",
) -> keras.Model:
    """The LSTM controller + `Stack` model, not compiled.

    `readout="both"`: the step output reads `[h_t, read_t]`; `"read"`: only
    `[x_t, read_t]`, this step's symbol and the top of the stack (which is
    all the deterministic part depends on). `init_scale` scales the variance
    of the stack projection's initial kernel (1: Glorot uniform); a larger
    one starts the push and pop strengths nearer 0 and 1. `round_strengths`:
    the stack rounds its push and pop strengths to 0/1
    (`Stack(round_strengths=True)`). `actions`: `Stack(actions=...)`.
    `push_value="controller"`: the stack's own projection of `h_t` gives
    the pushed value and the strengths; `"input"`: the value is a function
    of `x_t` only, the strengths of `h_t` (`memory_common.stack_control`),
    with Gaussian `noise` on their logits in training. `controller="dense"`:
    the controller is `Dense(units, tanh)` of `[x_t, read_tm1]`, with no
    state of its own, so that the stack is the model's only memory.
    """
    kernel = keras.initializers.VarianceScaling(
        init_scale, mode="fan_avg", distribution="uniform"
    )
    by_input = push_value == "input"
    stack = Stack(
        width=width,
        capacity=capacity,
        project=not by_input,
        round_strengths=round_strengths,
        actions=actions,
        kernel_initializer=kernel,
        name="stack",
    )
    x_t = keras.Input((2,), name="x_t")
    read_tm1 = keras.Input((stack.read_size,), name="read_tm1")
    stack_tm1 = stack.initial_state_inputs()
    controller_in = keras.layers.Concatenate()([x_t, read_tm1])
    if controller == "dense":
        h_t = keras.layers.Dense(units, activation="tanh", name="controller")(
            controller_in
        )
        own_tm1, own_t = [], []
    else:
        h_tm1 = keras.Input((units,), name="h_tm1")
        c_tm1 = keras.Input((units,), name="c_tm1")
        h_t, _, c_t = cg.cells.LSTMCell(units, name="controller")(
            [controller_in, h_tm1, c_tm1]
        )
        own_tm1, own_t = [h_tm1, c_tm1], [h_t, c_t]
    control = common.stack_control(width, x_t, h_t, actions, noise) if by_input else h_t
    read_t, *stack_t = stack([control, *stack_tm1])
    features = [x_t, read_t] if readout == "read" else [h_t, read_t]
    y_t = keras.layers.Dense(3, activation="softmax", name="next_symbol")(
        keras.layers.Concatenate()(features)
    )
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[read_tm1, *own_tm1, *stack_tm1],
        final_states=[read_t, *own_t, *stack_t],
        state_initializer=[None] * (1 + len(own_tm1)) + stack.state_initializers(),
        return_sequences=True,
        name="stack_rnn",
    )
    sequence = keras.Input((None, 2), name="sequence")
    return keras.Model(sequence, rnn(sequence), name="anbn_stack")


LEARNING_RATE = 3e-3
# What picks the best epoch and the best restart on the validation split: the
# strings right, then the loss on the deterministic steps (what the test
# scores), then the loss on every step.
PRIMARY = ("exact", "-det_loss")

FULL = {
    "train_n": (1, 20),
    "test_n": (21, 60),
    "train": 4000,
    "valid": 20,
    "epochs": 30,
    "restarts": 6,
    "restart_epochs": 10,
    "patience": 8,
    "budget": 240,
    "units": 16,
    "width": 4,
    "batch": 32,
    "multiple": 16,
    "jit": True,
}
QUICK = {
    "train_n": (1, 6),
    "test_n": (7, 12),
    "train": 512,
    "valid": 6,
    "epochs": 10,
    "units": 8,
    "width": 2,
    "batch": 32,
    "multiple": 64,  # one batch shape: tracing each shape costs seconds
    "jit": False,
}


def make_data(ns) -> dict[str, np.ndarray]:
    """The strings `a^n b^n` for each n in `ns`, padded to the longest.

    Returns:
        A dict: `inputs (N, T, 2)` one-hot `a`/`b`; `targets (N, T)` the next
        symbol (`END` after the last `b`); `weights (N, T)`, 1 on the `2n`
        real steps; `deterministic (N, T)`, 1 on the `n` predictable steps
        (from the first `b` on); `steps (N,)` = `2n`; `n (N,)`.
    """
    ns = np.asarray(ns, "int64")
    if ns.ndim != 1 or len(ns) == 0 or ns.min() < 1:
        raise ValueError(
            f"Argument `ns` must be a non-empty list of n >= 1. Received: ns={ns}"
        )
    steps = 2 * int(ns.max())
    num = len(ns)
    inputs = np.zeros((num, steps, 2), "float32")
    targets = np.zeros((num, steps), "int64")
    weights = np.zeros((num, steps), "float32")
    deterministic = np.zeros((num, steps), "float32")
    for i, n in enumerate(ns):
        inputs[i, :n, A] = 1.0
        inputs[i, n : 2 * n, B] = 1.0
        targets[i, : n - 1] = A
        targets[i, n - 1 : 2 * n - 1] = B
        targets[i, 2 * n - 1] = END
        weights[i, : 2 * n] = 1.0
        deterministic[i, n : 2 * n] = 1.0
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "deterministic": deterministic,
        "steps": 2 * ns,
        "n": ns,
    }


def score(outputs, data) -> dict:
    """`exact`: strings whose deterministic part is right; `max_n`: the
    largest n up to which every string is right (0 if the first is wrong);
    `det_loss`: the cross-entropy averaged over the deterministic steps only
    (what the task scores, without the unpredictable first half)."""
    right = np.asarray(outputs).argmax(-1) == data["targets"]
    scored = data["deterministic"] > 0
    exact = np.all(right | ~scored, axis=1)
    order = np.argsort(data["n"])
    wrong = np.flatnonzero(~exact[order])
    ns = data["n"][order]
    max_n = int(ns[-1]) if len(wrong) == 0 else int(ns[wrong[0]] - 1)
    det_loss = common.weighted_loss(outputs, data["targets"], data["deterministic"])
    return {
        "exact": float(np.mean(exact)),
        "max_n": float(max_n),
        "det_loss": det_loss,
    }


def add_arguments(parser) -> None:
    common.add_stack_arguments(parser, round_default="train")
    parser.add_argument(
        "--readout",
        choices=("both", "read"),
        default="both",
        help="what the step output reads: [h_t, read_t] or [x_t, read_t]",
    )
    parser.add_argument(
        "--init-scale",
        type=float,
        default=1.0,
        help="variance scale of the stack projection's initial kernel",
    )


def main(argv=None) -> dict:
    """Trains the stack model and the LSTM baseline; returns the results."""
    args = common.parse_args(__doc__.splitlines()[0], argv, add_arguments)
    cfg = common.configure(args, FULL, QUICK)
    rng = common.seed_everything(args.seed)
    low, high = cfg["train_n"]
    train = make_data(rng.integers(low, high + 1, cfg["train"]))
    valid = make_data(np.arange(low, high + 1).repeat(cfg["valid"] // (high - low + 1)))
    test = make_data(np.arange(cfg["test_n"][0], cfg["test_n"][1] + 1))

    sizes = (cfg["units"], cfg["width"])
    options = {
        "readout": args.readout,
        "init_scale": args.init_scale,
        "actions": args.actions,
        "push_value": args.push_value,
        "noise": args.noise,
        "controller": args.controller,
    }
    train_round, test_round = args.round == "train", args.round != "none"
    stack = build_stack_model(*sizes, 2 * high, **options, round_strengths=train_round)
    evaluator = build_stack_model(
        *sizes, 2 * cfg["test_n"][1], **options, round_strengths=test_round
    )
    schedules = {}
    if args.anneal is not None:
        if args.push_value != "input":
            raise ValueError("--anneal needs --push-value input")
        schedules["stack"] = common.temperature_schedule(args.anneal, cfg["epochs"])
    if args.noise and args.push_value != "input":
        raise ValueError("--noise needs --push-value input")
    # with --round test, a rounded copy at the training capacity picks the epoch
    validators = {}
    if args.round == "test":
        validators["stack"] = build_stack_model(
            *sizes, 2 * high, **options, round_strengths=True
        )
    lstm_units = common.lstm_units_for(stack.count_params(), 2, 3)
    models = {
        "stack": (stack, cfg["units"]),
        "lstm": (common.lstm_baseline(2, 3, lstm_units), lstm_units),
    }
    loss = "sparse_categorical_crossentropy"
    common.compile_models(models, loss, cfg, train, LEARNING_RATE)

    def build():  # a fresh memory model's weights for each random restart
        return build_stack_model(
            *sizes, 2 * high, **options, round_strengths=train_round
        )

    results = {
        "task": "anbn",
        "quick": args.quick,
        "seed": args.seed,
        "readout": args.readout,
        "init_scale": args.init_scale,
        "round": args.round,
        "actions": args.actions,
        "push_value": args.push_value,
        "anneal": args.anneal,
        "noise": args.noise,
        "controller": args.controller,
        "config": common.run_config(cfg),
    }
    results.update(
        common.compare(
            models,
            train,
            valid,
            {"test": test},
            score,
            PRIMARY,
            cfg,
            3,
            evaluators={"stack": evaluator},
            validators=validators,
            schedules=schedules,
            builders={"stack": build},
        )
    )
    if args.round == "test":  # the same weights without the rounding, for the record
        soft = build_stack_model(*sizes, 2 * cfg["test_n"][1], **options)
        soft.set_weights(stack.get_weights())
        for metric, value in score(common.predict(soft, test["inputs"]), test).items():
            results[f"stack_test_soft_{metric}"] = value
    return common.report(results, args.out)


if __name__ == "__main__":
    main()
