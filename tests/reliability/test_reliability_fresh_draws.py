"""`sample` with a negative seed draws anew in every process; a seed >= 0 repeats everywhere.

Exports written by keras-vae-train are traced after `keras.utils.set_random_seed`, which once
fixed the seed of the fresh draw's random op: every new server or app started with the same
"fresh" samples.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import reliability_helpers as helpers

_DRAW = """
import json, sys
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
saved_model_dir, tflite_file = sys.argv[1:]
served = tf.saved_model.load(saved_model_dir).signatures["sample"]
device = Interpreter(model_path=tflite_file).get_signature_runner("sample")
out = {}
for seed in (-1, 5):
    z = served(num_samples=tf.constant(4), seed=tf.constant(seed))["z"].numpy()
    out[f"served_{seed}"] = z.tolist()
    z = device(num_samples=np.array(4, np.int32), seed=np.array(seed, np.int32))["z"]
    out[f"device_{seed}"] = z.tolist()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_fresh_draws_differ_between_processes_and_seeded_ones_repeat(tmp_path):
    import keras

    from keras_vae import export

    keras.utils.set_random_seed(0)  # what keras-vae-train does before it exports
    paths = export.export_all(helpers.tiny_vae(), tmp_path, quantizations=("float32",))
    args = [sys.executable, "-c", _DRAW, paths["saved_model"], paths["tflite_float32"]]
    runs = [
        subprocess.Popen(
            args,
            cwd=helpers.REPO,
            env=helpers.python_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    draws = []
    for run in runs:
        out, err = run.communicate(timeout=240)
        assert run.returncode == 0, err[-3000:]
        draws.append({k: np.array(v) for k, v in json.loads(out.strip().splitlines()[-1]).items()})
    first, second = draws
    for where in ("served", "device"):
        assert np.max(np.abs(first[f"{where}_-1"] - second[f"{where}_-1"])) > 0.1, where
        np.testing.assert_array_equal(first[f"{where}_5"], second[f"{where}_5"])
    np.testing.assert_allclose(first["served_5"], first["device_5"], atol=1e-5)
