"""Dyck-2 next-token-set prediction (Suzgun et al. 2019) with a `Stack` superloop.

"Memory-Augmented Recurrent Neural Networks Can Learn Generalized Dyck
Languages": strings of two bracket pairs `( )` and `[ ]` are drawn from the
PCFG `S -> (S) | [S]` (probability p/2 each), `S -> SS` (q), `S -> ""`
(1 - p - q), with p = 0.5 and q = 0.25. After each token the model predicts
the *set* of tokens that may come next, as 5 sigmoid outputs: the two
opening brackets (always allowed), the two closing brackets (the one that
matches the innermost open bracket, if any) and the end of the string
(allowed exactly when every bracket is closed). A string counts as right
when every output of every step, thresholded at 0.5, is right:
*exact-sequence accuracy*. Training: 5,000 strings of length 2..50; test:
1,000 strings of length **52..100**.

The memory model is the step graph below. By default (chosen on the
validation split, docs/memory_tasks.md) its controller is stateless,
`Dense(units, tanh)` of `[x_t, read_tm1]` (`--controller dense`; `lstm`: an
LSTM), the pushed value is a function of this step's symbol only
(`--push-value input`), the push and pop strengths come from the
controller, and the step output reads this step's read only (the top of the
stack after this step's push or pop; `--readout both` adds the controller's
output). The model trains with soft strengths; its copies for validation
and test round them to 0/1 (`--round test`). The full run makes 6 random
restarts of 15 epochs (seeds seed..seed+5, `--restarts`,
`--restart-epochs`); the one best on the validation split trains on to 150
epochs. The stack's buffer shifts by one slot per step, so its capacity
counts steps: 50 in training, 100 in a copy of the model for the test
(capacity holds no weights). The baseline is an LSTM with at least as many
weights, trained on the same data in the same run; the best epoch of each
(and the best restart) is picked on a validation split of fresh strings at
the training lengths.

    python examples/dyck2.py            # full run
    python examples/dyck2.py --quick    # smoke run

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

TOKENS = "([)]"  # input channels 0..3
OUTPUTS = 5  # "(", "[", ")", "]", end


def build_stack_model(
    units: int,
    width: int,
    capacity: int,
    readout: str = "read",
    round_strengths: bool = False,
    actions: str = "sigmoid",
    push_value: str = "controller",
    noise: float = 0.0,
    controller: str = "lstm",
) -> keras.Model:
    """The controller + `Stack` model, not compiled.

    `readout="read"` (the default, chosen on the validation split): the step
    output reads only `read_t`, the top of the stack after this step's push
    or pop, which is all the answer depends on; `"both"`: `[h_t, read_t]`.
    `round_strengths`: the stack rounds its push and pop strengths to 0/1
    (`Stack(round_strengths=True)`). `actions`: `Stack(actions=...)`.
    `push_value="controller"`: the stack's own projection of `h_t` gives
    the pushed value and the strengths; `"input"`: the value is a function
    of `x_t` only, the strengths of `h_t` (`memory_common.stack_control`),
    with Gaussian `noise` on their logits in training. `controller="dense"`:
    the controller is `Dense(units, tanh)` of `[x_t, read_tm1]`, with no
    state of its own, so that the stack is the model's only memory.
    """
    by_input = push_value == "input"
    stack = Stack(
        width=width,
        capacity=capacity,
        project=not by_input,
        round_strengths=round_strengths,
        actions=actions,
        name="stack",
    )
    x_t = keras.Input((len(TOKENS),), name="x_t")
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
    features = (
        read_t if readout == "read" else keras.layers.Concatenate()([h_t, read_t])
    )
    y_t = keras.layers.Dense(OUTPUTS, activation="sigmoid", name="next_tokens")(
        features
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
    sequence = keras.Input((None, len(TOKENS)), name="sequence")
    return keras.Model(sequence, rnn(sequence), name="dyck2_stack")


P, Q = 0.5, 0.25
LEARNING_RATE = 3e-3

FULL = {
    "train_lengths": (2, 50),
    "test_lengths": (52, 100),
    "train": 5000,
    "valid": 500,
    "test": 1000,
    "epochs": 150,
    "restarts": 6,
    "restart_epochs": 15,
    "decay": True,
    "budget": 480,
    "units": 32,
    "width": 8,
    "batch": 32,
    "multiple": 16,
    "jit": True,
}
QUICK = {
    "train_lengths": (2, 12),
    "test_lengths": (14, 24),
    "train": 512,
    "valid": 128,
    "test": 128,
    "epochs": 30,
    "lr": 1e-2,  # the stateless model learns too slowly at 3e-3 for a smoke run
    "units": 16,
    "width": 4,
    "batch": 32,
    "multiple": 64,  # one batch shape: tracing each shape costs seconds
    "jit": False,
}


def sample_string(
    rng: np.random.Generator, max_length: int, p: float = P, q: float = Q
) -> str | None:
    """One string of the Dyck-2 PCFG, or `None` once it grows past `max_length`.

    The derivation expands the leftmost `S` first; closing brackets wait on
    the same list as the symbols still to expand, so the string is written
    left to right and can be abandoned as soon as it is too long.
    """
    pending, out = ["S"], []
    while pending:
        symbol = pending.pop()
        if symbol != "S":
            out.append(symbol)
            if len(out) > max_length:
                return None
            continue
        u = rng.random()
        if u < p:
            pair = "()" if u < p / 2 else "[]"
            pending += [pair[1], "S", pair[0]]
        elif u < p + q:
            pending += ["S", "S"]
        if len(out) + sum(s != "S" for s in pending) > max_length:
            return None
    return "".join(out)


def sample_strings(
    num: int, lengths: tuple[int, int], rng: np.random.Generator
) -> list[str]:
    """`num` strings of the PCFG whose length is in `lengths` (rejection sampling)."""
    low, high = lengths
    if not 2 <= low <= high:
        raise ValueError(
            f"Argument `lengths` must be (min, max) with 2 <= min <= max. "
            f"Received: lengths={lengths}"
        )
    strings = []
    while len(strings) < num:
        s = sample_string(rng, high)
        if s is not None and len(s) >= low:
            strings.append(s)
    return strings


def next_token_sets(string: str) -> np.ndarray:
    """`(len, 5)` 0/1: after each prefix, which of `( [ ) ] end` may follow."""
    sets = np.zeros((len(string), OUTPUTS), "float32")
    sets[:, :2] = 1.0
    stack = []
    for t, token in enumerate(string):
        if token in "([":
            stack.append(token)
        else:
            opened = stack.pop()
            if opened + token not in ("()", "[]"):
                raise ValueError(f"Not a Dyck-2 string: {string!r}")
        if stack:
            sets[t, 2 if stack[-1] == "(" else 3] = 1.0
        else:
            sets[t, 4] = 1.0
    return sets


def make_data(strings: list[str]) -> dict[str, np.ndarray]:
    """One-hot inputs, next-token-set targets, weights on every real step."""
    steps = max(len(s) for s in strings)
    num = len(strings)
    inputs = np.zeros((num, steps, len(TOKENS)), "float32")
    targets = np.zeros((num, steps, OUTPUTS), "float32")
    weights = np.zeros((num, steps), "float32")
    for i, s in enumerate(strings):
        inputs[i, np.arange(len(s)), [TOKENS.index(c) for c in s]] = 1.0
        targets[i, : len(s)] = next_token_sets(s)
        weights[i, : len(s)] = 1.0
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "steps": np.array([len(s) for s in strings]),
    }


def score(outputs, data) -> dict:
    """`exact`: strings whose every output is right; `step`: steps all right."""
    right = np.all((np.asarray(outputs) > 0.5) == (data["targets"] > 0.5), axis=-1)
    scored = data["weights"] > 0
    return {
        "exact": float(np.mean(np.all(right | ~scored, axis=1))),
        "step": float(np.sum(right & scored) / np.sum(scored)),
    }


def add_arguments(parser) -> None:
    common.add_stack_arguments(
        parser,
        round_default="test",
        controller_default="dense",
        push_value_default="input",
    )
    parser.add_argument(
        "--readout",
        choices=("both", "read"),
        default="read",
        help="what the step output reads: [h_t, read_t] or read_t",
    )


def main(argv=None) -> dict:
    """Trains the stack model and the LSTM baseline; returns the results."""
    args = common.parse_args(__doc__.splitlines()[0], argv, add_arguments)
    cfg = common.configure(args, FULL, QUICK)
    rng = common.seed_everything(args.seed)
    train = make_data(sample_strings(cfg["train"], cfg["train_lengths"], rng))
    valid = make_data(sample_strings(cfg["valid"], cfg["train_lengths"], rng))
    test = make_data(sample_strings(cfg["test"], cfg["test_lengths"], rng))

    sizes = (cfg["units"], cfg["width"])
    train_round, test_round = args.round == "train", args.round != "none"
    options = {
        "readout": args.readout,
        "actions": args.actions,
        "push_value": args.push_value,
        "noise": args.noise,
        "controller": args.controller,
    }
    train_steps, test_steps = cfg["train_lengths"][1], cfg["test_lengths"][1]
    stack = build_stack_model(
        *sizes, train_steps, **options, round_strengths=train_round
    )
    evaluator = build_stack_model(
        *sizes, test_steps, **options, round_strengths=test_round
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
            *sizes, train_steps, **options, round_strengths=True
        )
    lstm_units = common.lstm_units_for(stack.count_params(), len(TOKENS), OUTPUTS)
    models = {
        "stack": (stack, cfg["units"]),
        "lstm": (
            common.lstm_baseline(len(TOKENS), OUTPUTS, lstm_units, "sigmoid"),
            lstm_units,
        ),
    }
    loss = "binary_crossentropy"
    common.compile_models(models, loss, cfg, train, LEARNING_RATE)

    def build():  # a fresh memory model's weights for each random restart
        return build_stack_model(
            *sizes, train_steps, **options, round_strengths=train_round
        )

    results = {
        "task": "dyck2",
        "quick": args.quick,
        "seed": args.seed,
        "readout": args.readout,
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
            "exact",
            cfg,
            OUTPUTS,
            evaluators={"stack": evaluator},
            validators=validators,
            schedules=schedules,
            builders={"stack": build},
        )
    )
    if args.round == "test":  # the same weights without the rounding, for the record
        soft = build_stack_model(*sizes, test_steps, **options)
        soft.set_weights(stack.get_weights())
        for metric, value in score(common.predict(soft, test["inputs"]), test).items():
            results[f"stack_test_soft_{metric}"] = value
    return common.report(results, args.out)


if __name__ == "__main__":
    main()
