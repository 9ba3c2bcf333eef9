"""The attention superloop on the seed's toy task: find the last 2 before a 9.

A thin command line over `cellgraph.demo_attention` (the task, the models and
the plot live there, importable): it trains a `cellgraph.Superloop` with an
`Attention` system over 16 digits and a plain LSTM of about the same size,
prints a results table and writes a PNG of the attention position over time.

    python examples/attention_superloop.py            # full run, a few minutes
    python examples/attention_superloop.py --quick    # smoke run
    python examples/attention_superloop.py --out plots --seed 1

The full run's figures are recorded in docs/superloop.md.
"""

from cellgraph.demo_attention import main

if __name__ == "__main__":
    main()
