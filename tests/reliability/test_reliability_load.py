"""Load: 8 threads x 200 calls on one loaded SavedModel, and on per-thread LiteRT interpreters.

Every result is compared with a single-threaded reference computed beforehand; bad requests
mixed into the load fail on their own and leave the other calls' results correct.
`benchmarks/load.py` prints the calls/s of the same set-up.
"""

import threading

import numpy as np
import pytest
import reliability_helpers as helpers
import tensorflow as tf

THREADS = 8
CALLS = 200
VARIANTS = 4  # distinct inputs per thread


def _inputs(thread, variant):
    x = helpers.digits()[(thread * VARIANTS + variant) % 1700 :][:4]
    z = np.random.default_rng(thread * 100 + variant).standard_normal((3, 2)).astype("float32")
    return x, z, thread * 100 + variant


def _run_threads(worker):
    errors, barrier = [], threading.Barrier(THREADS)

    def guarded(thread):
        try:
            barrier.wait()
            worker(thread)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append((thread, repr(e)))

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


@pytest.mark.slow
def test_saved_model_under_8_threads_x_200_calls_gives_the_reference_results():
    loaded = helpers.loaded_saved_model()
    sig = loaded.signatures

    def call(kind, thread, variant):
        x, z, seed = _inputs(thread, variant)
        if kind == "serving_default":
            return sig["serving_default"](x=tf.constant(x))["reconstruction"].numpy()
        if kind == "encode":
            out = sig["encode"](x=tf.constant(x))
            return np.concatenate([out["mean"].numpy(), out["scale"].numpy()], axis=1)
        if kind == "decode":
            return sig["decode"](z=tf.constant(z))["x"].numpy()
        if kind == "sample":
            return sig["sample"](num_samples=tf.constant(3), seed=tf.constant(seed))["x"].numpy()
        return sig["log_likelihood"](x=tf.constant(x))["log_likelihood"].numpy()

    kinds = ("serving_default", "encode", "decode", "sample", "log_likelihood")
    reference = {
        (k, t, v): call(k, t, v) for k in kinds for t in range(THREADS) for v in range(VARIANTS)
    }
    mismatches, refused, done = [], [0] * THREADS, [0] * THREADS
    nan_x = np.full((2, 8, 8, 1), np.nan, np.float32)

    def worker(thread):
        for i in range(CALLS):
            if i % 25 == 24:  # a bad request now and then: refused, and harmless to the rest
                try:
                    sig["serving_default"](x=tf.constant(nan_x))
                except tf.errors.InvalidArgumentError:
                    refused[thread] += 1
                continue
            key = (kinds[i % len(kinds)], thread, (i // len(kinds)) % VARIANTS)
            got = call(*key)
            if not np.allclose(got, reference[key], rtol=1e-5, atol=1e-5):
                mismatches.append(key)
            done[thread] += 1

    errors = _run_threads(worker)
    assert errors == []
    assert mismatches == []
    assert refused == [CALLS // 25] * THREADS
    assert sum(done) + sum(refused) == THREADS * CALLS


@pytest.mark.slow
def test_per_thread_litert_interpreters_under_8_threads_x_200_calls():
    from ai_edge_litert.interpreter import Interpreter

    path = helpers.tflite_path()

    def runners():
        interpreter = Interpreter(model_path=path)
        return interpreter.get_signature_runner("decode"), interpreter.get_signature_runner(
            "sample"
        )

    decode, sample = runners()

    def call(kind, thread, variant, runners):
        _, z, seed = _inputs(thread, variant)
        if kind == "decode":
            return runners[0](z=z)["x"]
        return runners[1](num_samples=np.array(3, np.int32), seed=np.array(seed, np.int32))["x"]

    reference = {
        (k, t, v): call(k, t, v, (decode, sample)).copy()
        for k in ("decode", "sample")
        for t in range(THREADS)
        for v in range(VARIANTS)
    }
    # LiteRT agrees with the SavedModel it was converted from.
    sig = helpers.loaded_saved_model().signatures
    _, z, seed = _inputs(0, 0)
    np.testing.assert_allclose(
        reference[("decode", 0, 0)], sig["decode"](z=tf.constant(z))["x"].numpy(), atol=1e-5
    )
    mismatches, done = [], [0] * THREADS

    def worker(thread):
        own = runners()  # an interpreter is not thread-safe: one per thread
        for i in range(CALLS):
            key = (("decode", "sample")[i % 2], thread, (i // 2) % VARIANTS)
            if not np.allclose(call(*key, own), reference[key], rtol=1e-5, atol=1e-5):
                mismatches.append(key)
            done[thread] += 1

    errors = _run_threads(worker)
    assert errors == []
    assert mismatches == []
    assert done == [CALLS] * THREADS
