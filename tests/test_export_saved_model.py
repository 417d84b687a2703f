"""The TF Serving SavedModel: signatures checked against the Keras model in a process without
Keras, `saved_model_cli`, the documented REST requests, errors, and atomic versioned writes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from export_helpers import (
    REPO,
    REQUESTS_DIR,
    SERVING_DOC,
    SIGNATURES,
    copy_version,
    digits,
    load_request,
    load_response,
    rest_predict,
    saved_model,
    shape_of,
    vae,
)

import keras_vae
from keras_vae import export, rng
from keras_vae.export import rest_examples

# Runs in a fresh interpreter. Keras, TFP and this project are made unimportable before TF is
# imported: `import tensorflow` itself imports keras.src.optimizers when Keras is installed (it
# tolerates an ImportError), so "keras not in sys.modules" could not hold otherwise.
NO_KERAS_SCRIPT = textwrap.dedent(
    """
    import sys
    BLOCKED = ("keras", "tf_keras", "keras_vae", "tensorflow_probability")
    for name in BLOCKED:
        sys.modules[name] = None  # import raises ImportError, find_spec returns None
    import numpy as np
    import tensorflow as tf

    saved_model_dir, inputs_path, outputs_path = sys.argv[1:]
    inputs = np.load(inputs_path)
    loaded = tf.saved_model.load(saved_model_dir)
    x, z = tf.constant(inputs["x"]), tf.constant(inputs["z"])
    sig = loaded.signatures
    out = {"signatures": np.array(sorted(sig.keys()))}
    out["reconstruction"] = sig["serving_default"](x=x)["reconstruction"].numpy()
    encoded = sig["encode"](x=x)
    out["mean"], out["scale"] = encoded["mean"].numpy(), encoded["scale"].numpy()
    out["decoded"] = sig["decode"](z=z)["x"].numpy()
    for name, seed in (("seeded_a", 7), ("seeded_b", 7), ("fresh_a", -1), ("fresh_b", -1)):
        s = sig["sample"](num_samples=tf.constant(16), seed=tf.constant(seed))
        out[name + "_x"], out[name + "_z"] = s["x"].numpy(), s["z"].numpy()
    out["log_likelihood"] = sig["log_likelihood"](x=x)["log_likelihood"].numpy()
    loaded_keras = [m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m]]
    assert not loaded_keras, loaded_keras
    np.savez(outputs_path, **out)
    print("ok")
    """
)


def _run(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=240, **kwargs)


@pytest.fixture(scope="module")
def saved_model_cli_show():
    """`saved_model_cli show --all` on the export, started early: it runs while the TF-only
    process of the next test does."""
    _, path = saved_model()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["saved_model_cli", "show", "--all", "--dir", path]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_tensorflow_only_process_matches_keras(tmp_path, saved_model_cli_show):
    model, (_, path) = vae(), saved_model()
    x = digits()[1000:1012]
    z = rng.standard_normal_numpy((12, model.latent_dim), seed=3) * 1.5
    np.savez(tmp_path / "inputs.npz", x=x, z=z)
    result = _run(
        [sys.executable, "-c", NO_KERAS_SCRIPT, path, "inputs.npz", "outputs.npz"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = dict(np.load(tmp_path / "outputs.npz"))

    assert sorted(out["signatures"]) == sorted(SIGNATURES)
    mean, scale = model.encode(x)
    seeded_z = rng.standard_normal_numpy((16, model.latent_dim), seed=7)
    expected = {
        "reconstruction": model.reconstruct(x),
        "mean": mean,
        "scale": scale,
        "decoded": model.decode(z),
        "seeded_a_z": seeded_z,
        "seeded_a_x": model.decode(seeded_z),
        "fresh_a_x": model.decode(out["fresh_a_z"]),
        "log_likelihood": model.log_likelihood(
            x, num_samples=export.DEFAULT_IW_SAMPLES, seed=export.saved_model.LOG_LIKELIHOOD_SEED
        ),
    }
    errors = {k: float(np.max(np.abs(out[k] - np.asarray(v)))) for k, v in expected.items()}
    print("max abs error, SavedModel in a TF-only process vs Keras:", errors)
    assert max(errors.values()) <= 1e-5, errors
    assert out["log_likelihood"].shape == (12,)
    # A fixed seed repeats its draw; a negative seed draws anew.
    np.testing.assert_array_equal(out["seeded_a_x"], out["seeded_b_x"])
    assert np.max(np.abs(out["fresh_a_z"] - out["fresh_b_z"])) > 0.1


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(saved_model_cli_show):
    text, err = saved_model_cli_show.communicate(timeout=240)
    assert saved_model_cli_show.returncode == 0, err[-2000:]
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in text
    # Named inputs with explicit dtypes and an open batch dimension.
    assert "inputs['num_samples'] tensor_info:\n        dtype: DT_INT32\n        shape: ()" in text
    assert "inputs['x'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 8, 8, 1)" in text
    assert (
        "outputs['log_likelihood'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1)"
        in text
    )


def test_documented_rest_responses_are_the_files_and_the_script_regenerates_them(tmp_path):
    # The responses in docs/serving.md once came from another model than the default run's;
    # export.rest_examples rewrites the files and the inline JSON from a real export.
    doc = SERVING_DOC.read_text(encoding="utf-8")
    for name in SIGNATURES:
        text = (REQUESTS_DIR / f"{name}.response.json").read_text()
        assert text.strip() in doc, f"docs/serving.md does not show {name}.response.json"
    requests = tmp_path / "requests"
    shutil.copytree(REQUESTS_DIR, requests)
    copy = tmp_path / "serving.md"
    copy.write_text(doc, encoding="utf-8")
    base, version = saved_model()
    assert rest_examples.main([base, "--out", str(requests), "--doc", str(copy)]) == 0
    loaded = tf.saved_model.load(version)
    updated = copy.read_text(encoding="utf-8")
    for name in SIGNATURES:
        written = json.loads((requests / f"{name}.response.json").read_text())
        expected = rest_predict(loaded, load_request(name))
        assert (requests / f"{name}.response.json").read_text().strip() in updated, name
        np.testing.assert_allclose(
            np.asarray(_flat(written["outputs"])), _flat(expected["outputs"]), atol=1e-4
        )
    # Only the responses changed: the request bodies and the prose are still there.
    assert all(
        (REQUESTS_DIR / f"{n}.request.json").read_text().strip() in updated for n in SIGNATURES
    )
    assert rest_examples.main([str(tmp_path / "none"), "--out", str(requests)]) == 2


def _flat(outputs):
    if isinstance(outputs, dict):
        return np.concatenate([np.ravel(outputs[k]) for k in sorted(outputs)])
    return np.ravel(outputs)


def test_documented_rest_requests_feed_the_signatures():
    _, path = saved_model()
    loaded = tf.saved_model.load(path)
    doc = SERVING_DOC.read_text(encoding="utf-8")
    for name in SIGNATURES:
        request = load_request(name)
        request_text = (REQUESTS_DIR / f"{name}.request.json").read_text()
        assert request_text.strip() in doc, f"docs/serving.md lacks the {name} request body"
        assert request["signature_name"] == name
        response = rest_predict(loaded, request)
        documented = load_response(name)
        if isinstance(documented["outputs"], dict):
            assert set(response["outputs"]) == set(documented["outputs"])
            for key, value in documented["outputs"].items():
                assert shape_of(response["outputs"][key]) == shape_of(value), (name, key)
        else:
            assert shape_of(response["outputs"]) == shape_of(documented["outputs"]), name


def test_metadata_describes_the_export():
    model, (_, path) = vae(), saved_model()
    meta = export.read_metadata(path)
    assert meta["latent_dim"] == model.latent_dim == 2
    assert meta["data_shape"] == [8, 8, 1]
    assert meta["likelihood"] == "bernoulli"
    assert meta["max_samples"] == export.DEFAULT_MAX_SAMPLES
    assert meta["signatures"] == list(SIGNATURES)
    assert meta["version"] == 1 and meta["name"] == "vae"


def test_sample_cap_and_bad_inputs_fail_clearly():
    _, path = saved_model()
    sig = tf.saved_model.load(path).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match="between 1 and 1024"):
        sig["sample"](num_samples=tf.constant(1025), seed=tf.constant(0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="between 1 and 1024"):
        sig["sample"](num_samples=tf.constant(0), seed=tf.constant(0))
    assert sig["sample"](num_samples=tf.constant(1024), seed=tf.constant(0))["x"].shape == (
        1024,
        8,
        8,
        1,
    )
    # 7x7 images would pass through the conv encoder unnoticed without the shape check. The
    # other shapes check that it survives graph optimization (the signature's static shape
    # must not let an optimizer fold it away), whichever op would have failed first otherwise.
    for shape in [(2, 7, 7, 1), (4, 64), (8, 8, 1), (2, 8, 8), (2, 8, 8, 1, 1), ()]:
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"x must have shape \(batch, 8, 8, 1\)"
        ):
            sig["encode"](x=tf.zeros(shape))
    for shape in [(2, 3), (4, 2, 1), (2,)]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must have shape \(batch, 2\)"):
            sig["decode"](z=tf.zeros(shape))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        sig["serving_default"](x=tf.zeros([2, 8, 8, 1], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"needs pixels in \[0, 1\]"):
        sig["log_likelihood"](x=tf.fill([2, 8, 8, 1], 255.0))


def test_export_arguments_are_validated(tmp_path):
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        export.export_saved_model(unbuilt, tmp_path)
    not_a_vae = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="keras_vae.VAE"):
        export.export_saved_model(not_a_vae, tmp_path)
    model = vae()
    with pytest.raises(ValueError, match="version must be an integer"):
        export.export_saved_model(model, tmp_path, version="2")
    with pytest.raises(ValueError, match="name must be"):
        export.export_saved_model(model, tmp_path, name="../vae")
    with pytest.raises(ValueError, match="max_samples must be an integer >= 1"):
        export.export_saved_model(model, tmp_path, max_samples=0)
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        export.export_all(model, tmp_path, quantizations=("int4",))
    assert not any(tmp_path.iterdir()), "a rejected export wrote files"


def test_version_0_and_an_out_dir_that_is_a_file_are_refused(tmp_path):
    # Version 0 was accepted until TF Serving's ordering made it a trap: the next export,
    # "version 1", silently became the served one. Both entry points now ask for >= 1.
    model = vae()
    for version in (0, -1):
        with pytest.raises(
            ValueError, match=rf"version must be an integer >= 1; received {version}"
        ):
            export.export_saved_model(model, tmp_path, version=version)
        with pytest.raises(
            ValueError, match=rf"version must be an integer >= 1; received {version}"
        ):
            export.export_all(model, tmp_path, version=version)
    assert not any(tmp_path.iterdir()), "a rejected export wrote files"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match=r"is a file; expected a folder \(TF Serving"):
        export.export_all(model, a_file)
    with pytest.raises(NotADirectoryError, match="is below .*, a file; expected a folder"):
        export.export_all(model, a_file / "serving")
    assert a_file.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["a_file"]


def test_versions_are_never_overwritten_silently(tmp_path):
    model = vae()
    first = copy_version(tmp_path, 1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_saved_model(model, tmp_path, version=1, iw_samples=16)
    assert export.read_metadata(first)["iw_samples"] == export.DEFAULT_IW_SAMPLES
    again = export.export_saved_model(model, tmp_path, version=1, iw_samples=16, overwrite=True)
    assert again == first and export.read_metadata(first)["iw_samples"] == 16
    assert sorted(os.listdir(tmp_path / "vae")) == ["1"]  # nothing left aside


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    from keras_vae.export import saved_model as saved_model_lib

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "marker").write_text("new")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "marker").write_text("old")
    assert saved_model_lib._exchange(tmp_path / "new", tmp_path / "1")  # Linux, local disk
    assert (tmp_path / "1" / "marker").read_text() == "new"
    assert (tmp_path / "new" / "marker").read_text() == "old"


def test_overwriting_a_version_never_leaves_it_missing(tmp_path):
    # TF Serving polls the folder: during an overwrite the version must always be complete.
    model = vae()
    version = copy_version(tmp_path, 1)
    seen_missing, done = [], threading.Event()

    def watch():
        while not done.is_set():
            if not os.path.exists(os.path.join(version, "saved_model.pb")):
                seen_missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        export.export_saved_model(model, tmp_path, version=1, iw_samples=8, overwrite=True)
    finally:
        done.set()
        watcher.join()
    assert not seen_missing
    assert export.read_metadata(version)["iw_samples"] == 8
    assert sorted(os.listdir(tmp_path / "vae")) == ["1"]


def _tree(path):
    return {
        os.path.relpath(os.path.join(d, f), path): os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(path)
        for f in files
    }


@pytest.mark.slow
def test_killed_export_leaves_no_partial_version(tmp_path):
    """`keras-vae-export` (as `python -m keras_vae.export`) is SIGKILLed while it writes version 2."""
    base = tmp_path / "serving"
    v1 = copy_version(base, 1)
    before = _tree(v1)
    vae().save(tmp_path / "model.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "keras_vae.export", str(tmp_path / "model.keras")]
    proc = subprocess.Popen(
        [*command, "--out", str(base), "--version", "2"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    temps = []
    while time.monotonic() < deadline and proc.poll() is None and not temps:
        temps = [e for e in os.listdir(base / "vae") if e.startswith(".tmp-")]
        time.sleep(0.005)
    assert temps, "the export ended before its temporary folder was seen"
    # Killed at once: writing this small SavedModel and renaming it into place can take under
    # 50 ms, so any wait here may let the export finish first.
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    entries = os.listdir(base / "vae")
    # TF Serving only considers numeric folders: just the earlier version is visible, intact.
    assert [e for e in entries if e.isdigit()] == ["1"], entries
    assert _tree(v1) == before
    sample = tf.saved_model.load(v1).signatures["sample"]
    assert sample(num_samples=tf.constant(2), seed=tf.constant(0))["x"].shape == (2, 8, 8, 1)
    # The next export on this host removes what the killed process left.
    removed = export.saved_model.remove_stale_temps(base / "vae")
    assert sorted(os.path.basename(p) for p in removed) == sorted(temps)
    assert os.listdir(base / "vae") == ["1"]


def test_keras_vae_version_recorded():
    _, path = saved_model()
    with open(os.path.join(path, "assets.extra", "keras_vae.json")) as f:
        assert json.load(f)["keras_vae_version"] == keras_vae.__version__


def test_graph_session_like_tf_serving():
    """TF Serving runs a SavedModel in a graph Session (Grappler over the whole graph), not as
    eager functions: the signatures and their checks must hold there too. Feeds go through a
    callable, which, like TF Serving and unlike Session.run, does not pre-check shapes."""
    from tensorflow.core.protobuf import config_pb2

    _, path = saved_model()
    x = digits()[:4]
    want = np.asarray(vae().reconstruct(x))  # eagerly, before the graph below is the default
    tf1 = tf.compat.v1
    with tf.Graph().as_default() as graph, tf1.Session(graph=graph) as session:
        signatures = tf1.saved_model.loader.load(session, ["serve"], path).signature_def

        def predict(name, **feeds):
            signature = signatures[name]
            names, outputs = sorted(feeds), sorted(signature.outputs)
            options = config_pb2.CallableOptions(
                feed=[signature.inputs[k].name for k in names],
                fetch=[signature.outputs[k].name for k in outputs],
            )
            run = session._make_callable_from_options(options)
            return dict(zip(outputs, run(*[feeds[k] for k in names]), strict=True))

        out = predict("sample", num_samples=np.int32(3), seed=np.int32(42))
        np.testing.assert_allclose(out["z"], rng.standard_normal_numpy((3, 2), 42), atol=1e-5)
        got = predict("serving_default", x=x)["reconstruction"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"x must have shape"):
            predict("encode", x=np.zeros((4, 64), np.float32))
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must have shape"):
            predict("decode", z=np.zeros((4, 2, 1), np.float32))
        with pytest.raises(tf.errors.InvalidArgumentError, match="between 1 and 1024"):
            predict("sample", num_samples=np.int32(5000), seed=np.int32(0))
