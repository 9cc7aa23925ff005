"""``--help`` and argument errors are instant: they import neither TensorFlow nor Ray."""

from __future__ import annotations

import json
import subprocess
import sys

COMMANDS = [[], ["train"], ["oip"], ["precursor"], ["dream"], ["kmeans", "sweep"], ["mlp", "train"],
            ["experiment", "clusters"], ["report"], ["runs"]]

PROBE = """
import contextlib, io, json, sys
from cli.app import main
codes = []
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as text:
        codes.append(main(args))
    assert "Usage" in text.getvalue(), args
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "ray", "sklearn", "matplotlib"})
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def probe(argument_lists) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argument_lists)], capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_help_loads_no_tensorflow_or_ray():
    result = probe([[*command, "--help"] for command in COMMANDS])
    assert result == {"codes": [0] * len(COMMANDS), "heavy": []}


def test_bad_options_are_refused_before_anything_heavy_loads():
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from cli.app import main; code = main(sys.argv[1:]); "
         "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'ray'}))",
         "precursor", "--grid", "0"], capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[0] == "2" and done.stdout.strip().endswith("[]"), done
    assert done.stderr.strip() == "error: --grid: must be in [1, 28], got 0"
