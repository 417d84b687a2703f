"""The conditional VAE: Q(z|X, c), P(X|z, c), prior N(0, I), with class labels or vectors.

A small conditional MLP trained on the 8x8 digits must generate the class it is asked for (as a
logistic regression trained on the real digits sees it), score held-out digits higher given
their true label than a wrong one, survive a .keras round trip, and refuse bad conditions with
one clear error. A conv model at 28x28 builds, trains and samples.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

import keras_vae

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def digit_split(digits):
    x, y = digits
    y = np.asarray(y, dtype="int32")
    return x[:1500], y[:1500], x[1500:], y[1500:]


@pytest.fixture(scope="module")
def conditional_vae(digit_split):
    """A conditional MLP on the digits: 12 epochs, one hidden layer, ~10 s on two busy cores."""
    x_train, y_train, x_test, y_test = digit_split
    keras.utils.set_random_seed(0)
    vae = keras_vae.build_vae(
        (8, 8, 1), latent_dim=4, hidden_units=(128,), num_classes=NUM_CLASSES, seed=0
    )
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    vae.fit(x_train, y_train, epochs=12, batch_size=64, verbose=0)
    return vae


@pytest.fixture(scope="module")
def digit_classifier(digit_split):
    x_train, y_train, x_test, y_test = digit_split
    clf = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    # The judge itself must know the digits (measured: 0.91 on the held-out 297).
    assert clf.score(x_test.reshape(len(x_test), -1), y_test) > 0.85
    return clf


@pytest.mark.slow
def test_samples_of_each_class_are_classified_as_that_class(conditional_vae, digit_classifier):
    per_class = []
    for label in range(NUM_CLASSES):
        images = np.asarray(conditional_vae.sample(50, seed=label, condition=label))
        predicted = digit_classifier.predict(images.reshape(50, -1))
        per_class.append(float(np.mean(predicted == label)))
    print("classifier agreement per class:", [round(a, 2) for a in per_class])
    # Chance is 0.1; the issue asks for 0.6 on average over the ten classes. Measured 1.0 for
    # every class with seeds 0 to 3: the margins below leave room for other CPUs' rounding.
    assert np.mean(per_class) >= 0.9, per_class
    assert min(per_class) >= 0.7, per_class


@pytest.mark.slow
def test_held_out_digits_are_likelier_given_their_true_label(conditional_vae, digit_split):
    _, _, x_test, y_test = digit_split
    wrong = (y_test + np.random.default_rng(0).integers(1, NUM_CLASSES, len(y_test))) % 10
    wrong = wrong.astype("int32")
    true_ll = conditional_vae.log_likelihood(x_test, 100, seed=0, condition=y_test).numpy()
    wrong_ll = conditional_vae.log_likelihood(x_test, 100, seed=0, condition=wrong).numpy()
    print(f"log P(X|c) true {true_ll.mean():.2f}, wrong {wrong_ll.mean():.2f} nats")
    assert np.all(np.isfinite(true_ll)) and np.all(np.isfinite(wrong_ll))
    # Measured with seeds 0 to 3: -21.9 against -32.2 nats on average, and 97% of the digits
    # likelier given their own label.
    assert true_ll.mean() > wrong_ll.mean() + 5.0
    assert np.mean(true_ll > wrong_ll) > 0.9  # per digit, not only on average


def test_conditional_log_likelihood_noise_is_per_example(conditional_vae, digit_split):
    _, _, x_test, y_test = digit_split
    whole = conditional_vae.log_likelihood(x_test[:8], 20, seed=3, condition=y_test[:8])
    part = conditional_vae.log_likelihood(x_test[:3], 20, seed=3, condition=y_test[:3])
    np.testing.assert_allclose(part, whole[:3], rtol=1e-5, atol=1e-4)


def test_keras_file_round_trip_gives_identical_samples(tmp_path, conditional_vae, digit_split):
    _, _, x_test, y_test = digit_split
    path = str(tmp_path / "cvae.keras")
    conditional_vae.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.num_classes == NUM_CLASSES and loaded.get_config()["num_classes"] == NUM_CLASSES
    labels = np.arange(10, dtype="int32")
    np.testing.assert_array_equal(
        loaded.sample(10, seed=7, condition=labels),
        conditional_vae.sample(10, seed=7, condition=labels),
    )
    np.testing.assert_allclose(
        loaded.reconstruct(x_test[:5], condition=y_test[:5]),
        conditional_vae.reconstruct(x_test[:5], condition=y_test[:5]),
        atol=1e-6,
    )


def test_every_method_takes_the_condition(conditional_vae, digit_split):
    _, _, x_test, y_test = digit_split
    x, c = x_test[:6], y_test[:6]
    mean, scale = conditional_vae.encode(x, condition=c)
    assert mean.shape == scale.shape == (6, 4)
    assert conditional_vae.decode(mean, condition=c).shape == (6, 8, 8, 1)
    assert conditional_vae.reconstruct(x, condition=c).shape == (6, 8, 8, 1)
    assert conditional_vae.predict((x, c), verbose=0).shape == (6, 8, 8, 1)
    assert conditional_vae.sample(3, seed=0, condition=[1, 2, 3]).shape == (3, 8, 8, 1)
    # One seed, two classes: the same latents, different images.
    sevens, ones = (conditional_vae.sample(4, seed=0, condition=k) for k in (7, 1))
    assert np.abs(np.asarray(sevens) - np.asarray(ones)).mean() > 0.05
    metrics = conditional_vae.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert np.isfinite(metrics["loss"])


def test_fit_takes_arrays_and_datasets_of_pairs_with_validation(digit_split):
    x_train, y_train, x_test, y_test = digit_split
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(32,), num_classes=10, seed=0)
    vae.compile(optimizer="adam")
    history = vae.fit(
        x_train[:256], y_train[:256], epochs=1, batch_size=64, verbose=0,
        validation_data=(x_test[:64], y_test[:64]),
    )  # fmt: skip
    assert "val_loss" in history.history
    train = tf.data.Dataset.from_tensor_slices((x_train[:256], y_train[:256])).batch(64)
    val = tf.data.Dataset.from_tensor_slices((x_test[:64], y_test[:64])).batch(64)
    history = vae.fit(train, epochs=1, verbose=0, validation_data=val)
    assert np.isfinite(history.history["val_loss"][-1])


def test_vector_conditions(digit_split):
    x_train, _, x_test, _ = digit_split
    rng = np.random.default_rng(0)
    c_train = rng.random((256, 3)).astype("float32")
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(32,), condition_dim=3, seed=0)
    vae.compile(optimizer="adam")
    vae.fit(x_train[:256], c_train, epochs=1, batch_size=64, verbose=0)
    assert vae.sample(5, seed=0, condition=[0.1, 0.5, 0.9]).shape == (5, 8, 8, 1)
    ll = vae.log_likelihood(x_test[:4], 10, seed=0, condition=c_train[:4])
    assert ll.shape == (4,) and np.all(np.isfinite(ll))
    with pytest.raises(ValueError, match=r"length 3.*received shape \(2,\)"):
        vae.sample(5, condition=[0.1, 0.5])
    with pytest.raises(ValueError, match="NaN or inf"):
        vae.decode(np.zeros((1, 2), "float32"), condition=[[0.0, np.nan, 1.0]])


@pytest.fixture(scope="module")
def untrained_cvae():
    return keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(16,), num_classes=10)


@pytest.mark.parametrize(
    "condition, message",
    [
        (None, r"conditional: pass condition= integer class labels 0\.\.9.*received no condition"),
        (10, r"must be in 0\.\.9; received 10"),
        ([3, -1, 2], r"must be in 0\.\.9; received -1 \(example 1\)"),
        ([0.0, 1.0, 2.0], "received dtype float64. Pass the labels as integers"),
        (np.eye(10, dtype="float32")[:3], r"shape \(3, 10\). One-hot rows\? Pass the labels"),
        ([1, 2], "Received 2 conditions for 3 examples"),
    ],
)
def test_bad_class_conditions_are_one_clear_error(untrained_cvae, condition, message):
    with pytest.raises(ValueError, match=message):
        untrained_cvae.sample(3, seed=0, condition=condition)


def test_bad_conditions_in_every_method_and_in_fit(untrained_cvae, digit_split):
    x_train, y_train, _, _ = digit_split
    x = x_train[:3]
    for call in (
        lambda: untrained_cvae.encode(x),
        lambda: untrained_cvae.reconstruct(x, condition=[0, 1, 12]),
        lambda: untrained_cvae.log_likelihood(x, 5, condition=[0, 1, 10]),
    ):
        with pytest.raises(ValueError, match=r"0\.\.9"):
            call()
    with pytest.raises(ValueError, match="Received 2 conditions for 3 examples"):
        untrained_cvae.decode(np.zeros((3, 2), "float32"), condition=[0, 1])
    untrained_cvae.compile(optimizer="adam")
    with pytest.raises(ValueError, match="must come with its conditions.*received x alone"):
        untrained_cvae.fit(x_train[:64], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="must come with its conditions"):
        untrained_cvae.fit(tf.data.Dataset.from_tensor_slices(x_train[:64]).batch(32), verbose=0)
    with pytest.raises(ValueError, match="received 63 conditions for 64 examples"):
        untrained_cvae.fit(x_train[:64], y_train[:63], epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"must be in 0\.\.9; received 11"):
        untrained_cvae.fit(x_train[:2], np.array([1, 11]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_data must come with its conditions"):
        untrained_cvae.fit(x_train[:64], y_train[:64], verbose=0, validation_data=x_train[:8])
    bad = tf.data.Dataset.from_tensor_slices((x_train[:4], np.array([0, 1, 2, 10]))).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class labels must be in 0\.\.9"):
        untrained_cvae.fit(bad, epochs=1, verbose=0)


def test_unconditional_models_refuse_a_condition_and_keep_their_config(digits):
    x, _ = digits
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(16,))
    with pytest.raises(ValueError, match="This VAE is unconditional; received condition=3"):
        vae.sample(2, condition=3)
    with pytest.raises(ValueError, match="unconditional; received condition=an array of shape"):
        vae.log_likelihood(x[:2], 5, condition=np.array([1, 2]))
    config = vae.get_config()
    assert "num_classes" not in config and "condition_dim" not in config
    assert not vae.conditional
    assert len(vae.encoder.inputs) == 1 and len(vae.decoder.inputs) == 1


def test_conditional_networks_must_take_the_condition():
    encoder, decoder = keras_vae.build_mlp((8, 8, 1), latent_dim=2)
    with pytest.raises(ValueError, match=r"takes two inputs, \[x, c\].*condition_dim=10"):
        keras_vae.VAE(encoder, decoder, num_classes=10)
    with pytest.raises(ValueError, match="not both"):
        keras_vae.build_vae((8, 8, 1), num_classes=10, condition_dim=3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        keras_vae.build_vae((8, 8, 1), num_classes=0)


def test_a_28x28_conditional_conv_model_trains_a_step_and_samples(digits28):
    x, y = digits28
    vae = keras_vae.build_vae((28, 28, 1), latent_dim=2, arch="conv", num_classes=10, seed=0)
    vae.compile(optimizer="adam")
    history = vae.fit(x[:32], y[:32].astype("int32"), epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    samples = vae.sample(4, seed=0, condition=[0, 3, 7, 9])
    assert samples.shape == (4, 28, 28, 1)
    assert vae.encode(x[:0], condition=np.zeros(0, "int32"))[0].shape == (0, 2)
