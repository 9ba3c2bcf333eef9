"""The main job: `python -m cellgraph.demo` trains the attention superloop.

A `cellgraph.Superloop` whose controller moves an `Attention` system along 16
digits learns to stop at the last 2 before a 9; a plain LSTM of the same size is
trained beside it. It prints a results table and writes a PNG of the attention
position over time (`--out`, default `./cellgraph_demo_out`). `--quick` is a
smoke run; `--help` lists the flags. The task code lives in
`cellgraph.demo_attention`; the earlier adding-problem job is
`python -m cellgraph.demo_adding`.
"""

from cellgraph.demo_attention import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    main()
