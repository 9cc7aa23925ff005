"""How many conv3 maps random starts leave dead, by the kind of start (docs/FIDELITY.md).

Whether a start leaves a map dead is decided before the first ascent step: a start whose
post-ReLU map is 0 everywhere has no gradient and never moves (an ``oip`` run with
``--epochs 0`` and one with ``--epochs 1200`` give the same alive flags), so one forward pass
of the start images counts what a whole ``dreamctl oip --rescue none`` run would.

A start is ``offset + contrast * image``, ``image`` being ``oip``'s own start r of map m
(jobs.oip.start_images: seed 0, 4 length scales, per-image mean 0 and std 1 in the model's
standardized units; contrast 1 and the training mean as offset are what dreamctl uses). The
offset is given as a pixel value in [0, 1] (0 black, 0.5 mid-gray) or ``mean`` (the training
set's mean pixel: standardized 0). A map is dead with r restarts when its first r starts all
leave it at 0. Prints one line per (amplitudes, offset, contrast) and, with ``--list``, the
dead maps of each.

    .venv/bin/python benchmarks/dead_by_start.py models/cnn.keras
    .venv/bin/python benchmarks/dead_by_start.py M --offsets 0.5 --contrasts 0.1 --restarts 8 --list
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cluster.model_file import load_model  # noqa: E402
from core.patterns import SCALE_GRIDS  # noqa: E402
from jobs.oip import start_images  # noqa: E402

N_MAPS = 128  # conv3


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(value) for value in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras file written by dreamctl train")
    parser.add_argument("--restarts", type=int, default=8, help="starts per map (dead: all of them leave it at 0)")
    parser.add_argument("--offsets", default="0,mean,0.5", help="pixel values in [0, 1] or 'mean', comma-separated")
    parser.add_argument("--contrasts", type=floats, default=(0.1, 0.3, 1.0, 3.0), help="factors on the start images")
    parser.add_argument("--amplitudes", action="append", type=floats,
                        help="amplitudes of the 28, 14, 7, 4-cell scales (repeatable; default 1,1,1,1 and 1,0,0,0)")
    parser.add_argument("--list", action="store_true", help="print the dead maps of each start kind")
    args = parser.parse_args()

    import keras

    model, metadata = load_model(args.model)
    conv3 = keras.Model(model.inputs, model.get_layer("conv3").output)
    mean, std = metadata["standardization"]["mean"], metadata["standardization"]["std"]
    maps = np.repeat(np.arange(N_MAPS), args.restarts)
    print(f"{args.model}: dead conv3 maps of {N_MAPS}, first start / all {args.restarts} starts")
    for amplitudes in args.amplitudes or [(1, 1, 1, 1), (1, 0, 0, 0)]:
        images = np.concatenate([start_images(0, m, args.restarts, SCALE_GRIDS, amplitudes) for m in range(N_MAPS)])
        for offset_text in args.offsets.split(","):
            offset = 0.0 if offset_text == "mean" else (float(offset_text) - mean) / std
            for contrast in args.contrasts:
                starts = (offset + contrast * images)[..., None].astype(np.float32)
                activation = conv3.predict(starts, batch_size=1024, verbose=0)  # (maps × restarts, 3, 3, 128)
                alive = (activation[np.arange(len(maps)), :, :, maps].mean(axis=(1, 2)) > 0).reshape(N_MAPS, -1)
                dead = np.flatnonzero(~alive.any(axis=1))
                print(f"amplitudes {','.join(f'{a:g}' for a in amplitudes)}  offset {offset_text:>4}  contrast "
                      f"{contrast:<4g}: {int((~alive[:, 0]).sum()):3d} / {len(dead):3d}"
                      + (f"  [{','.join(map(str, dead))}]" if args.list else ""))


if __name__ == "__main__":
    main()
