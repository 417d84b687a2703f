import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import inference, objectives
from tests.conftest import ring_points
from tests.contracts import assert_config_round_trip, assert_keras_file_round_trip


def small_vae(**kwargs):
    kwargs.setdefault("hidden_units", (16,))
    return keras_vae.build_vae((8, 8, 1), latent_dim=kwargs.pop("latent_dim", 3), **kwargs)


def test_add_loss_holds_beta_times_the_closed_form_kl(digits):
    images, _ = digits
    x = images[:10]
    vae = small_vae(beta=0.7, seed=1)
    vae(x)
    (added,) = vae.losses
    mu, s = (t.numpy() for t in vae.encode(x))
    expected = 0.7 * np.mean(0.5 * np.sum(mu**2 + s**2 - 1 - np.log(s**2), axis=1))
    np.testing.assert_allclose(added.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_train_step_reports_reconstruction_plus_kl(binary_digits):
    x_train, _ = binary_digits
    vae = small_vae(seed=2)
    vae.compile(optimizer=keras.optimizers.SGD(0.0))  # no update: the numbers stay comparable
    logs = vae.evaluate(x_train[:64], batch_size=64, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["reconstruction_loss"] + logs["kl_loss"], rel=1e-5)
    assert logs["kl_loss"] > 0 and logs["reconstruction_loss"] > 0


def test_fit_lowers_the_held_out_negative_elbo(trained_digits_vae):
    _, initial, history = trained_digits_vae
    final = history.history["val_loss"][-1]
    # Untrained: ~44 nats (64 pixels near log 2 each); trained: well below.
    assert final < 0.7 * initial["loss"], (initial, final)
    assert history.history["val_kl_loss"][-1] > 0.5  # the latent space is in use


def test_importance_weighted_bound_is_above_the_elbo_and_rises_with_k(
    trained_digits_vae, binary_digits
):
    vae, _, _ = trained_digits_vae
    x = binary_digits[1][:100]
    elbo = np.mean([vae.elbo(x, seed=s).numpy().mean() for s in range(5)])
    estimates = [vae.log_likelihood(x, k, seed=3).numpy().mean() for k in (1, 10, 100, 1000)]
    assert estimates[0] == pytest.approx(elbo, abs=0.5)  # K = 1 is the ELBO
    assert all(b > a for a, b in zip(estimates, estimates[1:], strict=False)), estimates
    assert estimates[-1] > elbo + 0.3


def test_naive_estimator_spreads_far_more_than_importance_sampling(
    trained_digits_vae, binary_digits
):
    vae, _, _ = trained_digits_vae
    x = binary_digits[1][:8]
    naive = np.stack([vae.naive_log_likelihood(x, 100, seed=s).numpy() for s in range(8)])
    weighted = np.stack([vae.log_likelihood(x, 100, seed=s).numpy() for s in range(8)])
    ratio = np.median(naive.std(axis=0) / weighted.std(axis=0))
    assert ratio > 3, ratio
    # And the naive one sits below: most prior draws explain x badly.
    assert naive.mean() < weighted.mean()


@pytest.mark.slow
def test_ring_vae_samples_lie_on_the_ring():
    x = ring_points(4000)
    # sigma is the regularization knob: 0.1 gives a tight ring; 0.02 (tried) over-fits the
    # encoder and leaves holes in the latent space that decode off the ring.
    vae = keras_vae.build_vae(
        (2,), latent_dim=2, likelihood="gaussian", sigma=0.1, seed=0, hidden_units=(64, 64)
    )
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(x, epochs=30, batch_size=128, verbose=0)
    radius = np.linalg.norm(vae.sample(2000, seed=0).numpy(), axis=1)
    data_radius = np.median(np.linalg.norm(x, axis=1))  # ~1.12: 1 + E||z||/10
    assert abs(np.median(radius) - data_radius) < 0.1, np.median(radius)
    assert np.mean(np.abs(radius - data_radius) < 0.25) > 0.85
    # The prior's own radius spreads with std ~0.52: the decoder concentrated it.
    assert np.std(radius) < 0.3, np.std(radius)


def test_sample_is_repeatable_per_seed_and_fresh_without_one():
    vae = small_vae(seed=4)
    a, b, c = vae.sample(5, seed=1), vae.sample(5, seed=1), vae.sample(5, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(vae.sample(5), vae.sample(5))
    assert a.shape == (5, 8, 8, 1) and (a.numpy() >= 0).all() and (a.numpy() <= 1).all()


def test_eager_decode_is_traced_once_and_follows_training(digits):
    images, _ = digits
    vae = small_vae(seed=7)
    vae.compile(optimizer="adam")
    for batch in (1, 5, 9):  # batch sizes share one trace
        z = np.random.default_rng(batch).normal(size=(batch, 3)).astype("float32")
        np.testing.assert_allclose(vae.decode(z), tf.sigmoid(vae.decoder(z)), atol=1e-6)
    before = vae.decode(z).numpy()
    vae.fit(images[:64], epochs=1, verbose=0)
    after = vae.decode(z).numpy()
    assert not np.allclose(before, after)  # the traced decode reads the trained weights
    np.testing.assert_allclose(after, tf.sigmoid(vae.decoder(z)), atol=1e-6)
    assert inference._eager_decoder(vae).experimental_get_tracing_count() <= 2


def test_eager_decoder_cache_does_not_keep_models_alive():
    import gc
    import weakref

    vae = small_vae()
    vae.decode(np.zeros((1, 3), "float32"))
    assert vae in inference._EAGER_DECODERS
    ref = weakref.ref(vae)
    del vae
    gc.collect()
    assert ref() is None


def test_prior_samples_are_standard_normal():
    z = small_vae(latent_dim=2).sample_prior(20000, seed=0).numpy()
    # Standard errors: mean 1/sqrt(n) ~ 0.007, std ~ 0.005.
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.03)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(arch="mlp", likelihood="bernoulli"),
        dict(arch="conv", likelihood="gaussian", sigma=None),
    ],
)
def test_save_and_load_round_trip(tmp_path, digits, kwargs):
    images, _ = digits
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, beta=0.5, seed=3, **kwargs)
    vae.compile(optimizer="adam")
    vae.fit(images[:64], epochs=1, batch_size=32, verbose=0)
    loaded = assert_keras_file_round_trip(vae, tmp_path / "vae.keras", images[:8])
    assert (loaded.beta, loaded.likelihood_name, loaded.latent_dim) == (
        0.5,
        kwargs["likelihood"],
        2,
    )
    # A loaded model keeps training.
    loaded.fit(images[:64], epochs=1, batch_size=32, verbose=0)


def test_config_round_trip_rebuilds_the_networks():
    vae = small_vae(likelihood="gaussian", sigma=0.2, beta=2.0)
    clone = assert_config_round_trip(vae, sigma=0.2, beta=2.0, data_shape=(8, 8, 1))
    assert clone.count_params() == vae.count_params()


def test_learned_sigma_moves_to_the_noise_the_latents_cannot_explain():
    # 4-D isotropic noise of std 0.5 through a 1-D latent: at least three directions stay
    # unexplained, so their sigma must rise from its start (0.1) towards 0.5.
    x = np.random.default_rng(0).normal(scale=0.5, size=(512, 4)).astype("float32")
    vae = keras_vae.build_vae(
        (4,), latent_dim=1, likelihood="gaussian", sigma=None, seed=0, hidden_units=(32,)
    )
    start = vae.likelihood.scale().numpy()
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    vae.fit(x, epochs=30, batch_size=64, verbose=0)
    sigma = np.sort(vae.likelihood.scale().numpy())
    assert np.all(start < 0.11)
    assert np.all(sigma[1:] > 0.25) and np.all(sigma < 0.7), sigma  # measured ~0.3 after 30


def test_fit_takes_datasets_of_x_or_x_y_and_standard_callbacks(tmp_path, digits):
    images, labels = digits
    x, y = images[:256], labels[:256]
    vae = small_vae(seed=5)
    vae.compile(optimizer="adam")
    only_x = tf.data.Dataset.from_tensor_slices(x).batch(64)
    with_y = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    history = vae.fit(
        only_x,
        epochs=3,
        validation_data=with_y,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
            keras.callbacks.ModelCheckpoint(
                tmp_path / "best.keras", monitor="val_loss", save_best_only=True
            ),
            keras.callbacks.TensorBoard(tmp_path / "logs"),
        ],
    )
    assert len(history.history["val_loss"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]
    restored = keras.models.load_model(tmp_path / "best.keras")
    assert restored.latent_dim == 3
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))
    vae.fit(x, y, epochs=1, verbose=0)  # y is accepted and ignored


def test_evaluate_matches_a_hand_computed_negative_elbo(binary_digits):
    x = binary_digits[1][:32]
    vae = small_vae(seed=6)
    vae.compile()
    logs = vae.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    elbo = np.mean([vae.elbo(x, seed=s).numpy().mean() for s in range(20)])
    assert logs["loss"] == pytest.approx(-elbo, rel=0.05)
    assert logs["kl_loss"] == pytest.approx(
        objectives.kl_to_standard_normal(vae.posterior(x)).numpy().mean(), rel=1e-5
    )


# ---- bad input ------------------------------------------------------------------------------


def test_wrong_shape_names_received_and_expected():
    vae = small_vae()
    with pytest.raises(
        ValueError, match=r"Expected inputs of shape \(batch, 8, 8, 1\); received shape \(2, 64\)"
    ):
        vae.predict(np.zeros((2, 64), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"received shape \(8, 8, 1\)"):
        vae.encode(np.zeros((8, 8, 1), "float32"))


def test_integer_pixels_are_refused_with_advice():
    vae = small_vae()
    vae.compile()
    with pytest.raises(TypeError, match="received dtype uint8.*astype"):
        vae.fit(np.zeros((4, 8, 8, 1), "uint8"), verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_fail(bad):
    vae = small_vae()
    vae.compile()
    x = np.zeros((4, 8, 8, 1), "float32")
    x[1, 2, 3, 0] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf"):
        vae.fit(x, verbose=0)


def test_bernoulli_needs_unit_interval_pixels_and_says_how_to_fix():
    vae = small_vae()
    x = np.full((2, 8, 8, 1), 255.0, "float32")
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"(?s)pixels in \[0, 1\].*255.0.*Divide 0..255 images by 255",
    ):
        vae.reconstruct(x)
    gaussian = small_vae(likelihood="gaussian")
    assert np.isfinite(gaussian.reconstruct(x)).all()  # real-valued data is fine there


def test_bad_constructor_arguments():
    with pytest.raises(
        ValueError, match="latent_dim must be an integer >= 1; received latent_dim=0"
    ):
        keras_vae.build_vae((4,), latent_dim=0)
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'"):
        keras_vae.build_vae((4,), likelihood="poisson")
    with pytest.raises(ValueError, match="Unknown arch 'rnn'"):
        keras_vae.build_vae((4,), arch="rnn")
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        keras_vae.build_vae((4,), beta=-1)
    encoder, _ = keras_vae.build_mlp((4,), latent_dim=2)
    _, decoder = keras_vae.build_mlp((4,), latent_dim=3)
    with pytest.raises(
        ValueError, match=r"encoder must output \(batch, 2 \* latent_dim\) = \(batch, 6\)"
    ):
        keras_vae.VAE(encoder, decoder)
    with pytest.raises(TypeError, match="decoder must be a built keras.Model"):
        keras_vae.VAE(encoder, lambda z: z)


def test_decode_checks_latent_shape():
    with pytest.raises(ValueError, match=r"latents of shape \(batch, 3\); received shape \(4, 2\)"):
        small_vae().decode(np.zeros((4, 2), "float32"))


def test_custom_user_networks_are_accepted():
    inputs = keras.Input((6,))
    encoder = keras.Model(
        inputs, keras.layers.Dense(4)(keras.layers.Dense(8, activation="tanh")(inputs))
    )
    z = keras.Input((2,))
    decoder = keras.Model(z, keras.layers.Dense(6)(z))
    vae = keras_vae.VAE(encoder, decoder, likelihood="gaussian", sigma=0.5)
    vae.compile()
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    history = vae.fit(x, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert vae.sample(3, seed=0).shape == (3, 6)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_training_step_under_a_precision_policy_lowers_a_finite_loss(binary_digits, policy):
    x_train, x_test = binary_digits
    keras.mixed_precision.set_global_policy(policy)
    try:
        vae = small_vae(latent_dim=4, hidden_units=(64,), seed=0)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = vae.fit(x_train[:512], epochs=4, batch_size=64, verbose=0).history["loss"]
        scaled = isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
        log_px = vae.log_likelihood(x_test[:8], 16, seed=0).numpy()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # mixed_float16 runs the networks in float16 behind Keras' loss scaling; the objective and
    # the estimates stay float32.
    assert scaled == (policy == "mixed_float16")
    assert vae.compute_dtype == ("float16" if scaled else "float32")
    assert np.all(np.isfinite(history)) and history[-1] < history[0] - 2, history
    assert log_px.dtype == np.float32 and np.all(np.isfinite(log_px))


# ---- bad input to a second fit, and values checked before Keras starts ----------------------


@pytest.fixture
def fitted_vae(digits):
    images, _ = digits
    vae = small_vae(seed=0)
    vae.compile(optimizer="adam")
    vae.fit(images[:32], epochs=1, batch_size=16, verbose=0)
    return vae


@pytest.mark.parametrize(
    "shape, received",
    [((32, 28, 28, 1), r"\(32, 28, 28, 1\)"), ((32, 784), r"\(32, 784\)")],
    ids=["28x28", "flat"],
)
def test_a_second_fit_on_wrongly_shaped_data_names_both_shapes(fitted_vae, shape, received):
    # The first fit's train function is reused (and relaxed) by Keras: without the check up
    # front this was "Matrix size-incompatible" or "Cannot iterate over a shape with unknown rank".
    x = np.random.default_rng(0).random(shape, dtype="float32")
    expected = r"Expected inputs of shape \(batch, 8, 8, 1\); received shape "
    with pytest.raises(ValueError, match=expected + received):
        fitted_vae.fit(x, epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=expected + r"\(None, .*the x dataset's elements"):
        fitted_vae.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=expected + received):
        fitted_vae.evaluate(x, verbose=0)
    with pytest.raises(ValueError, match=expected + r"\(None, .*validation_data"):
        fitted_vae.fit(
            np.zeros((16, 8, 8, 1), "float32"),
            validation_data=tf.data.Dataset.from_tensor_slices(x).batch(16),
            verbose=0,
        )


def test_an_unbatched_dataset_is_told_to_batch(fitted_vae, digits):
    images, _ = digits
    with pytest.raises(ValueError, match=r"received shape \(8, 8, 1\).*\.batch\(batch_size\)"):
        fitted_vae.fit(tf.data.Dataset.from_tensor_slices(images[:16]), verbose=0)


def test_data_of_unknown_shape_is_checked_in_the_graph(fitted_vae):
    def batches():
        yield np.zeros((16, 28, 28, 1), "float32")

    ds = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec(None, tf.float32))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"Expected inputs of shape \(batch, 8, 8, 1\); received shape\] \[16 28 28 1\]",
    ):
        fitted_vae.fit(ds, epochs=1, verbose=0)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
def test_unscaled_or_nan_pixels_are_refused_before_keras_starts(digits, method, as_tensor):
    images, _ = digits
    vae = small_vae()
    vae.compile(optimizer="adam")
    convert = tf.constant if as_tensor else np.asarray
    with pytest.raises(ValueError) as error:
        getattr(vae, method)(convert(images[:16] * 255), verbose=0)
    assert str(error.value) == (
        "keras_vae.VAE: likelihood='bernoulli' needs pixels in [0, 1]; received min 0 and max "
        "255. Divide 0..255 images by 255, or use likelihood='gaussian'."
    )
    # A plain Python error, raised before any graph ran: no TensorFlow traceback with it.
    assert error.value.__cause__ is None and not error.traceback[-1].path.name.startswith("keras")
    x = images[:16].copy()
    x[5, 1, 1, 0] = np.nan
    with pytest.raises(ValueError) as error:
        getattr(vae, method)(convert(x), verbose=0)
    assert str(error.value) == (
        "keras_vae.VAE: inputs contain NaN or inf (the first in example 5, 1 examples in all); "
        "expected finite values. Drop or fill those examples."
    )
    assert vae.optimizer.iterations.numpy() == 0


def test_unscaled_validation_data_is_refused_before_training(digits):
    images, _ = digits
    vae = small_vae()
    vae.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"needs pixels in \[0, 1\]; received min 0 and max 255"):
        vae.fit(images[:16], validation_data=(images[:16] * 255,), verbose=0)
    assert vae.optimizer.iterations.numpy() == 0


def _same_weights(kwargs_a, kwargs_b, x):
    a = small_vae(seed=3, **kwargs_a)
    b = small_vae(seed=3, **kwargs_b)
    a(x[:2]), b(x[:2])
    b.set_weights(a.get_weights())
    return a, b


def test_iwae_with_k1_is_the_elbo_objective_for_the_same_noise(binary_digits):
    x = binary_digits[0][:32]
    elbo, iwae = _same_weights({}, {"objective": "iwae", "k": 1}, x)
    a, b = elbo._objective(x, training=False), iwae._objective(x, training=False)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)  # the objective
    np.testing.assert_allclose(a[2], b[2], rtol=1e-5)  # -log P(X|z) per example
    np.testing.assert_allclose(a[3], b[3], rtol=1e-6)  # the KL


def test_iwae_bound_is_tighter_than_the_elbo_on_a_trained_model(trained_digits_vae, binary_digits):
    vae, _, _ = trained_digits_vae
    _, x_test = binary_digits
    iwae = keras_vae.VAE.from_config({**vae.get_config(), "objective": "iwae", "k": 20})
    iwae(x_test[:2])
    iwae.set_weights(vae.get_weights())
    iwae.compile(optimizer="adam")
    bound = iwae.evaluate(x_test, batch_size=64, verbose=0, return_dict=True)
    elbo = vae.evaluate(x_test, batch_size=64, verbose=0, return_dict=True)
    # -L_20 <= -ELBO, reported under the bound's own name; the loss is that bound.
    assert bound["negative_iwae_k20"] < elbo["loss"] - 0.1
    assert bound["loss"] == pytest.approx(bound["negative_iwae_k20"], rel=1e-5)
    assert bound["kl_loss"] == pytest.approx(elbo["kl_loss"], rel=1e-3)


def test_free_bits_change_the_objective_but_not_the_reported_kl(binary_digits):
    x = binary_digits[0][:64]
    plain, floored = _same_weights({}, {"free_bits": 5.0}, x)
    objective_a, _, reconstruction, kl = plain._objective(x, training=False)
    objective_b, _, _, kl_b = floored._objective(x, training=False)
    np.testing.assert_allclose(kl, kl_b, rtol=1e-6)  # the true KL, whatever the floor
    per_dim = np.mean(objectives.kl_per_dimension(floored.posterior(x)).numpy(), axis=0)
    assert np.all(per_dim < 5.0)  # every dimension below the floor: it counts 5 nats each
    np.testing.assert_allclose(objective_b, np.mean(reconstruction) + 3 * 5.0, rtol=1e-5)
    assert objective_b > objective_a


@pytest.mark.parametrize(
    "kwargs", [{"free_bits": 0.5}, {"objective": "iwae", "k": 4}], ids=["free_bits", "iwae"]
)  # fmt: skip
def test_a_padded_batch_steps_and_scores_as_its_real_examples_alone(binary_digits, kwargs):
    # The trainer pads each pass's last batch to full size with weight-0 examples (so that it
    # splits evenly over replicas): the step, the objective and the metrics must be those of
    # the real examples alone. The noise is drawn for the padded batch from the same seed
    # state; its first rows are the unpadded batch's noise.
    x = binary_digits[0][:40]
    real, padded = x[:24], np.concatenate([x[:24], x[24:40]])
    weights = np.r_[np.ones(24), np.zeros(16)].astype("float32")
    a, b = _same_weights(kwargs, kwargs, x)
    for model in (a, b):
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
    state = a.seed_generator.state.numpy()
    b.seed_generator.state.assign(state)
    objective_a = float(a._objective(real, training=False)[0])
    objective_b = float(b._objective((padded, np.zeros((40, 0), "float32"), weights), False)[0])
    assert objective_b == pytest.approx(objective_a, rel=1e-6)
    unweighted = float(b._objective(padded, training=False)[0])
    assert abs(unweighted - objective_a) > 1e-3  # the padding would count without its weights
    a.seed_generator.state.assign(state), b.seed_generator.state.assign(state)
    logs_a = a.train_on_batch(real, return_dict=True)
    logs_b = b.train_on_batch(padded, sample_weight=weights, return_dict=True)
    for name, value in logs_a.items():
        assert logs_b[name] == pytest.approx(value, rel=1e-5), name
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert np.abs(a.get_weights()[0] - small_vae(seed=3).get_weights()[0]).max() > 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [({"objective": "iwae", "beta": 0.5}, "beta=1"), ({"objective": "iwae", "free_bits": 1.0},
     "free bits"), ({"k": 3}, "applies to objective='iwae'"), ({"objective": "vi"}, "Unknown "
     "objective"), ({"free_bits": -1.0}, "free_bits must be"), ({"k": 0, "objective": "iwae"},
     "k must be")],
)  # fmt: skip
def test_bad_objective_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_vae(**kwargs)


def test_new_arguments_round_trip_through_config_and_keras_files(tmp_path, digits):
    images, _ = digits
    vae = small_vae(
        likelihood="continuous_bernoulli", objective="iwae", k=3, seed=1, activation="elu"
    )
    assert_config_round_trip(vae, objective="iwae", k=3, likelihood_name="continuous_bernoulli")
    vae.compile(optimizer="adam")
    vae.fit(images[:64], epochs=1, batch_size=32, verbose=0)
    loaded = assert_keras_file_round_trip(vae, tmp_path / "vae.keras", images[:8])
    assert loaded.metrics_names == vae.metrics_names
    floored = small_vae(free_bits=0.25)
    assert assert_config_round_trip(floored, free_bits=0.25).free_bits == 0.25


def test_an_empty_batch_encodes_and_scores_to_empty_outputs_with_conv_networks():
    # oneDNN's Conv2D failed on zero examples ("Incompatible shapes: [0,28,28,4] vs.
    # [1,1,1,8]"): the served encode and serving_default refused an empty request.
    vae = keras_vae.build_vae(
        (28, 28, 1), latent_dim=4, arch="conv", likelihood="gaussian", filters=(4, 8), seed=0
    )
    empty = np.zeros((0, 28, 28, 1), "float32")
    mean, scale = vae.encode(empty)
    assert mean.shape == (0, 4) and scale.shape == (0, 4)
    assert vae.reconstruct(empty).shape == (0, 28, 28, 1)
    assert vae.log_likelihood(empty, num_samples=4, seed=0).shape == (0,)
    # A batch that is not empty is untouched by the guard.
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    direct = vae.posterior_from_encoding(vae.encoder(x))
    np.testing.assert_array_equal(vae.encode(x)[0], direct.loc)
    np.testing.assert_array_equal(vae.encode(x)[1], direct.scale.diag)
