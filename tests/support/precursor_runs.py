"""A small precursor run through ``cli.app.main`` in a folder of its own, and its phases read
back in a fixed order (the precursor and object-store tests compare runs with these)."""

from __future__ import annotations

import os

import pandas as pd

# phase 1 pruned hard: per shard of 20 patterns and map, 8 starts go on after step 1, 4 after step 2
SMALL = ["precursor", "--maps", "3,7", "--grid", "2", "--test-epochs", "3", "--prune", "1:8,2:4", "--top", "2",
         "--full-epochs", "20", "--patterns-per-shard", "20", "--actors", "2", "--chunk-size", "32"]


def run_dir(tmp_path):
    runs = [p for p in (tmp_path / "results" / "precursor").iterdir() if not p.is_symlink()]
    assert len(runs) == 1
    return runs[0]


def read(folder, phase):
    return pd.read_parquet(folder / phase).sort_values(["map", "pattern"] if phase == "scores" else ["map", "rank"]).reset_index(drop=True)


def run_once(folder, args, model_path):
    """Run ``dreamctl ARGS`` in ``folder``: (run dir, scores, oips)."""
    from cli.app import main

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main([*args, "--model", str(model_path)]) == 0
    finally:
        os.chdir(cwd)
    path = run_dir(folder)
    return path, read(path, "scores"), read(path, "oips")
