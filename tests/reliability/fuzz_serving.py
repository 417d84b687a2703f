"""Fuzz cases for what is served: the SavedModel's five signatures and the TFLite runners.

Every request is generated from one table of dtypes, shapes and values per input, crossed with
each model: the fast subset asks the tiny MLP (8x8, Bernoulli); `--full` adds an untrained conv
Gaussian at 28x28 and an MLP on 2-D vectors (the ring's shape). A valid request must give the
right shapes and finite values (an example's score alone equals its score in a batch); an invalid
one must be refused with the signature's own words.
"""

import functools
import os

import numpy as np
import reliability_helpers as helpers
from fuzz import Case

REFUSED = (
    r"must have shape|expected to be a|contain NaN or inf|needs pixels in|between 1 and|"
    r"at most \d+ examples|missing a required argument|got an unexpected keyword|"
    r"Could not find matching concrete function|cannot compute|Got value of type"
)


class Model:
    """An exported model as the cases see it: its signatures, shapes and caps."""

    def __init__(self, label, saved_model_dir, data_shape, latent_dim, likelihood, caps):
        self.label = label
        self.dir = saved_model_dir
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.max_batch, self.max_samples = caps

    @functools.cached_property
    def signatures(self):
        import tensorflow as tf

        return tf.saved_model.load(self.dir).signatures


@functools.cache
def _models(full):
    models = [
        Model(
            "mlp8",
            helpers.saved_model_dir(),
            helpers.DATA_SHAPE,
            helpers.LATENT_DIM,
            "bernoulli",
            (_default_max_batch(), helpers.MAX_SAMPLES),
        )
    ]
    if full:
        models.append(_untrained("conv28", (28, 28, 1), 4, "gaussian", arch="conv", filters=(4, 8)))
        models.append(_untrained("mlp2d", (2,), 2, "gaussian", hidden_units=(16,)))
    return models


def _default_max_batch():
    from keras_vae.export import DEFAULT_MAX_BATCH

    return DEFAULT_MAX_BATCH


def _untrained(label, shape, latent_dim, likelihood, **network):
    import keras_vae
    from keras_vae import export

    vae = keras_vae.build_vae(
        shape, latent_dim=latent_dim, likelihood=likelihood, seed=0, **network
    )
    path = export.export_saved_model(
        vae, helpers.temp_dir(label), name="vae", max_samples=16, iw_samples=4, max_batch=32
    )
    return Model(label, path, shape, latent_dim, likelihood, (32, 16))


# ------------------------------------------------------------------------------------------------
# Inputs as numpy arrays; each generator yields `(name, array, valid)`.

BAD_DTYPES = ("int32", "int64", "float64", "float16", "uint8", "bool")


def _example_values(m, batch=3):
    rng = np.random.default_rng(len(m.data_shape))
    return rng.random((batch, *m.data_shape)).astype("float32")


def _x_shapes(m):
    s = m.data_shape
    yield "scalar", np.float32(0.5), False
    yield "one example without batch", np.zeros(s, "float32"), False
    yield "trailing 1", np.zeros((2, *s, 1), "float32"), False
    yield "last dim dropped", np.zeros((2, *s[:-1]), "float32"), False
    yield "first dim + 1", np.zeros((2, s[0] + 1, *s[1:]), "float32"), False
    yield "last dim doubled", np.zeros((2, *s[:-1], 2 * s[-1]), "float32"), False
    yield "flattened", np.zeros((2, int(np.prod(s)) + (len(s) == 1)), "float32"), False
    yield "empty batch", np.zeros((0, *s), "float32"), True
    yield "batch of 1", _example_values(m, 1), True
    yield "batch at the cap", np.full((m.max_batch, *s), 0.5, "float32"), True
    yield "batch over the cap", np.zeros((m.max_batch + 1, *s), "float32"), False
    yield "batch of 100000", np.zeros((100_000, *s), "float32"), False


def _x_values(m):
    bernoulli = m.likelihood == "bernoulli"
    base = _example_values(m)
    for label, value, valid in [
        ("one NaN", np.nan, False),
        ("one +inf", np.inf, False),
        ("one -inf", -np.inf, False),
        ("one 1e38", 1e38, not bernoulli),
        ("one -1e38", -1e38, not bernoulli),
        ("one 3e38", 3e38, not bernoulli),
        ("one 1.0000001", 1.0000001, not bernoulli),
        ("one -1e-7", -1e-7, not bernoulli),
        ("one subnormal", 1e-45, True),
        ("one -0.0", -0.0, True),
    ]:
        x = base.copy()
        x.reshape(len(x), -1)[1, 0] = value
        yield label, x, valid
    yield "all NaN", np.full_like(base, np.nan), False
    yield "0..255 scale", np.round(base * 255), not bernoulli
    yield "all zeros", np.zeros_like(base), True
    yield "all ones", np.ones_like(base), True


def _check_x_output(m, name, x):
    def check(out):
        out = {k: v.numpy() for k, v in out.items()}
        b = len(x)
        want = {
            "serving_default": {"reconstruction": (b, *m.data_shape)},
            "encode": {"mean": (b, m.latent_dim), "scale": (b, m.latent_dim)},
            "log_likelihood": {"log_likelihood": (b,)},
        }[name]
        for key, shape in want.items():
            if out[key].shape != shape:
                return f"{key} has shape {out[key].shape}, expected {shape}"
            values = out[key]
            if key == "log_likelihood":
                # Past float32's range (x = 1e38 under a Gaussian) the score is -inf, below
                # every anomaly threshold (documented); never NaN or +inf.
                values = np.where(values == -np.inf, 0.0, values)
            if not np.isfinite(values).all():
                return f"{key} has NaN or inf"
        if name == "encode" and (out["scale"] <= 0).any():
            return "a posterior scale <= 0"
        if name == "log_likelihood" and m.likelihood == "bernoulli" and (out[key] > 1e-4).any():
            return "a Bernoulli log-likelihood above 0"
        return None

    return check


def _z_cases(m):
    d = m.latent_dim
    z = np.random.default_rng(1).standard_normal((3, d)).astype("float32")
    yield "scalar", np.float32(0), False
    yield "one latent without batch", np.zeros(d, "float32"), False
    yield "width + 1", np.zeros((3, d + 1), "float32"), False
    yield "trailing 1", np.zeros((3, d, 1), "float32"), False
    yield "empty batch", np.zeros((0, d), "float32"), True
    yield "batch at the cap", np.zeros((m.max_batch, d), "float32"), True
    yield "batch over the cap", np.zeros((m.max_batch + 1, d), "float32"), False
    yield "batch of 1000000", np.zeros((1_000_000, d), "float32"), False
    for label, value in [("NaN", np.nan), ("+inf", np.inf), ("-inf", -np.inf)]:
        bad = z.copy()
        bad[1, 0] = value
        yield f"one {label}", bad, False
    yield "normal draws", z, True
    yield "latents of 1e4", np.full((2, d), 1e4, "float32"), True


def _check_decode(m, z):
    def check(out):
        x = out["x"].numpy()
        if x.shape != (len(z), *m.data_shape):
            return f"x has shape {x.shape}, expected {(len(z), *m.data_shape)}"
        if not np.isfinite(x).all():
            return "x has NaN or inf"
        if m.likelihood == "bernoulli" and ((x < 0) | (x > 1)).any():
            return "Bernoulli means outside [0, 1]"
        return None

    return check


def _call(signature, **arrays):
    import tensorflow as tf

    def run():
        return signature(**{k: tf.constant(v) for k, v in arrays.items()})

    return run


def _saved_model_cases(m):
    sigs = lambda: m.signatures  # noqa: E731 - loaded when the first case runs
    cases = []
    import tensorflow as tf

    errors = (tf.errors.InvalidArgumentError, TypeError, ValueError)

    def case(name, fn, valid, check=None):
        cases.append(
            Case(
                f"{m.label} {name}",
                fn,
                "result" if valid else "error",
                REFUSED,
                errors,
                check,
            )
        )

    for sig in ("serving_default", "encode", "log_likelihood"):
        for label, x, valid in [*_x_shapes(m), *_x_values(m)]:
            case(
                f"{sig} x {label}",
                lambda sig=sig, x=x: _call(sigs()[sig], x=x)(),
                valid,
                _check_x_output(m, sig, x),
            )
        base = _example_values(m)
        for dtype in BAD_DTYPES:
            case(
                f"{sig} x {dtype}",
                lambda sig=sig, d=dtype, b=base: _call(sigs()[sig], x=b.astype(d))(),
                False,
            )
        case(f"{sig} x strings", lambda sig=sig: _call(sigs()[sig], x=np.array([["a"]]))(), False)
        case(
            f"{sig} unknown input name",
            lambda sig=sig, b=base: _call(sigs()[sig], images=b)(),
            False,
        )
    case("log_likelihood alone equals in a batch", lambda: _batch_independence(m), True)
    for label, z, valid in _z_cases(m):
        case(
            f"decode z {label}",
            lambda z=z: _call(sigs()["decode"], z=z)(),
            valid,
            _check_decode(m, z),
        )
    for dtype in BAD_DTYPES:
        z = np.zeros((2, m.latent_dim), dtype)
        case(f"decode z {dtype}", lambda z=z: _call(sigs()["decode"], z=z)(), False)
    cap = m.max_samples
    for n in (1, cap, 0, -1, cap + 1, 2**31 - 1, -(2**31)):
        for seed in (0, 7, -1, 2**31 - 1, -(2**31)):
            case(
                f"sample num_samples {n} seed {seed}",
                lambda n=n, seed=seed: _sample_twice(m, n, seed),
                1 <= n <= cap,
                _check_sample(m, n, seed),
            )
    for arg, dtype in [("num_samples", "int64"), ("num_samples", "float32"), ("seed", "int64")]:
        values = {"num_samples": np.int32(2), "seed": np.int32(0)}
        values[arg] = values[arg].astype(dtype)
        case(f"sample {arg} {dtype}", lambda v=values: _call(sigs()["sample"], **v)(), False)
    case("sample without seed", lambda: _call(sigs()["sample"], num_samples=np.int32(2))(), False)
    return cases


def _sample_twice(m, n, seed):
    first = _call(m.signatures["sample"], num_samples=np.int32(n), seed=np.int32(seed))()
    second = _call(m.signatures["sample"], num_samples=np.int32(n), seed=np.int32(seed))()
    return first["x"].numpy(), second["x"].numpy()


def _check_sample(m, n, seed):
    def check(pair):
        first, second = pair
        if first.shape != (n, *m.data_shape):
            return f"x has shape {first.shape}, expected {(n, *m.data_shape)}"
        if not np.isfinite(first).all():
            return "x has NaN or inf"
        same = np.array_equal(first, second)
        if seed >= 0 and not same:
            return f"seed {seed} drew different samples twice"
        if seed < 0 and same:
            return "a fresh draw (seed < 0) repeated"
        return None

    return check


def _batch_independence(m):
    import tensorflow as tf

    x = _example_values(m, 5)
    batch = m.signatures["log_likelihood"](x=tf.constant(x))["log_likelihood"].numpy()
    alone = m.signatures["log_likelihood"](x=tf.constant(x[3:4]))["log_likelihood"].numpy()
    gap = abs(float(batch[3] - alone[0]))
    if gap > 1e-3 * max(1.0, abs(float(alone[0]))):
        raise AssertionError(f"example 3 scores {batch[3]} in a batch of 5 and {alone[0]} alone")
    return f"{alone[0]:.4f} both ways"


def serving_cases(full):
    for m in _models(full):
        yield from _saved_model_cases(m)


# ------------------------------------------------------------------------------------------------
# TFLite: LiteRT has no assertions; the graph's reshape and clamp keep requests bounded.


@functools.cache
def _tflite_files(full):
    from keras_vae import export

    mlp = _models(full)[0]
    files = [(mlp, "float32", helpers.tflite_path())]
    if full:
        conv = _models(full)[1]
        for m, quantize in [(mlp, "dynamic"), (mlp, "int8"), (conv, "float32")]:
            out = os.path.join(helpers.temp_dir(f"tflite_{quantize}"), "vae.tflite")
            files.append((m, quantize, export.export_tflite(m.dir, out, quantize=quantize)))
    return files


def _runner(path, name):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path).get_signature_runner(name)


def tflite_cases(full):
    errors = (RuntimeError, ValueError, TypeError)
    for m, quantize, path in _tflite_files(full):
        label = f"{m.label} {quantize}"
        for zlabel, z, valid in _z_cases(m):
            finite = np.isfinite(z).all()
            yield Case(
                f"{label} decode z {zlabel}",
                lambda p=path, z=z: _tflite_decode(p, z),
                # No assertion op in LiteRT: NaN or inf latents give undefined rows (the
                # documented contract); every other row must still be right.
                "result" if valid else ("error" if finite else "either"),
                r"RESHAPE|Got value of type|Cannot set tensor|dimension|Dimension",
                errors,
                _check_tflite_decode(m, z),
            )
        for dtype in ("float64", "int32"):
            z = np.zeros((2, m.latent_dim), dtype)
            yield Case(
                f"{label} decode z {dtype}",
                lambda p=path, z=z: _tflite_decode(p, z),
                "error",
                r"Got value of type|Cannot set tensor|type",
                errors,
            )
        cap = m.max_samples
        for n in (1, cap, 0, -1, cap + 1, 2**31 - 1, -(2**31)):
            for seed in (0, 5, -1):
                yield Case(
                    f"{label} sample num_samples {n} seed {seed}",
                    lambda p=path, n=n, seed=seed: _tflite_sample(p, n, seed),
                    "either",
                    r"num_samples",
                    errors,
                    _check_tflite_sample(m, n, seed),
                )


def _tflite_decode(path, z):
    return _runner(path, "decode")(z=z)["x"]


def _check_tflite_decode(m, z):
    def check(x):
        if x.shape != (len(z), *m.data_shape):
            return f"x has shape {x.shape}, expected {(len(z), *m.data_shape)}"
        rows = np.isfinite(z).all(axis=tuple(range(1, z.ndim)))
        if not np.isfinite(x[rows]).all():
            return "x has NaN or inf in a row of finite latents"
        return None

    return check


def _tflite_sample(path, n, seed):
    runner = _runner(path, "sample")
    args = {"num_samples": np.array(n, np.int32), "seed": np.array(seed, np.int32)}
    return runner(**args)["x"], runner(**args)["x"]


def _check_tflite_sample(m, n, seed):
    def check(pair):
        first, second = pair
        rows = min(max(n, 1), m.max_samples)  # the graph clamps what LiteRT cannot refuse
        if first.shape != (rows, *m.data_shape):
            return f"x has shape {first.shape}, expected {(rows, *m.data_shape)}"
        if not np.isfinite(first).all():
            return "x has NaN or inf"
        if seed >= 0 and not np.array_equal(first, second):
            return f"seed {seed} drew different samples twice"
        return None

    return check
