"""jobs.clusters: the comparison of MLPs on cluster features with the reference, on hand-made
epochs (CPU-second speed-ups to each target accuracy)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jobs.clusters import compare


def hand_made_epochs() -> pd.DataFrame:
    """Reference: 1 CPU s per epoch; K = 70: 0.25 CPU s per epoch, better and sooner."""
    rows = []
    for epoch, (ref, clustered) in enumerate(zip([0.90, 0.95, 0.96, 0.97], [0.92, 0.97, 0.975, 0.98]), start=1):
        rows.append({"config": "reference", "k": 0, "n_inputs": 784, "lambda2": 0.2, "epoch": epoch, "train_acc": 1.0,
                     "test_acc": ref, "seconds": 2.0, "cpu_seconds": 1.0, "prep_cpu_seconds": 0.0})
        rows.append({"config": "k0070", "k": 70, "n_inputs": 70, "lambda2": 0.2 * 70 / 784, "epoch": epoch,
                     "train_acc": 1.0, "test_acc": clustered, "seconds": 0.5, "cpu_seconds": 0.25, "prep_cpu_seconds": 0.5})
    return pd.DataFrame(rows)


def test_comparison_relative_to_the_reference():
    table = compare(hand_made_epochs(), (0.95, 0.97, 0.98)).to_pandas().set_index(["config", "target"])
    assert len(table) == 6
    k70 = table.loc["k0070"]
    # 0.95: reference at epoch 2 (2 CPU s), K = 70 at epoch 2 (0.5 CPU s) → 4×
    assert k70.loc[0.95, "epoch_first"] == 2 and k70.loc[0.95, "speedup_cpu_first"] == pytest.approx(4.0)
    assert k70.loc[0.95, "speedup_cpu_first_with_prep"] == pytest.approx(2.0 / 1.0)
    # 0.97: reference at epoch 4 (4 CPU s), K = 70 at epoch 2 (0.5 CPU s) → 8×
    assert k70.loc[0.97, "speedup_cpu_first"] == pytest.approx(8.0)
    # 0.98: the reference never gets there; the seed's ratio uses its whole run (4 CPU s / 1 CPU s)
    assert math.isnan(table.loc[("reference", 0.98), "epoch_first"])
    assert math.isnan(k70.loc[0.98, "speedup_cpu_first"])
    assert k70.loc[0.98, "speedup_cpu_vs_reference_run"] == pytest.approx(4.0)
    assert k70.loc[0.98, "best_test_acc"] == 0.98 and k70.loc[0.98, "best_vs_reference"] == pytest.approx(0.01)
    assert (table.loc["reference", "speedup_cpu_first"].dropna() == 1.0).all()
