"""keras_vae.standardize: the latent frame moves the codes onto the prior, exactly."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import export, objectives


def _trained(binary_digits, standardize=True):
    x_train, _ = binary_digits
    keras.utils.set_random_seed(0)
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=3, hidden_units=(32,), seed=0)
    if not standardize:
        return vae
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(x_train[:512], epochs=3, batch_size=64, verbose=0)
    # Move the frame off the identity, as training on real data does, so the step is visible.
    vae.latent_frame.shift.assign([0.7, -1.5, 0.2])
    vae.latent_frame.scale.assign([0.3, 2.0, 1.1])
    return vae


def _mean_kl(vae, x):
    return float(np.mean(objectives.kl_to_standard_normal(vae.posterior(x))))


def test_the_step_keeps_every_reconstruction_and_lowers_the_kl(binary_digits):
    x_train, x_test = binary_digits
    vae = _trained(binary_digits)
    before_recon = vae.reconstruct(x_test[:32]).numpy()
    before_kl = _mean_kl(vae, x_train[:512])
    z = np.random.default_rng(0).standard_normal((6, 3)).astype("float32")
    before_decode = vae.decode(z).numpy()
    m, c = keras_vae.standardize_latents(vae, x_train[:512])
    assert np.max(np.abs(m)) > 0.1 or np.max(np.abs(np.log(c))) > 0.1  # a real step was taken
    np.testing.assert_allclose(vae.reconstruct(x_test[:32]).numpy(), before_recon, atol=1e-5)
    # The same network input, reached from the new coordinates of the old latents.
    np.testing.assert_allclose(vae.decode((z - m) / c).numpy(), before_decode, atol=1e-5)
    after_kl = _mean_kl(vae, x_train[:512])
    assert after_kl < before_kl - 0.1, (before_kl, after_kl)
    # The codes are now centred on the prior and spread as wide as it where they were wider
    # (the frame only widens: c >= 1).
    posterior = vae.posterior(x_train[:512])
    loc, var = posterior.loc.numpy(), np.square(posterior.scale.diag.numpy())
    np.testing.assert_allclose(loc.mean(axis=0), 0.0, atol=1e-4)
    spread = loc.var(axis=0) + var.mean(axis=0)
    assert np.all(c >= 1.0) and np.any(c > 1.01), c
    np.testing.assert_allclose(spread[c > 1.0], 1.0, rtol=1e-4)
    assert np.all(spread <= 1.0 + 1e-4)
    # A second step has nothing left to take.
    m2, c2 = keras_vae.standardize_latents(vae, x_train[:512])
    np.testing.assert_allclose(m2, 0.0, atol=1e-4)
    np.testing.assert_allclose(c2, 1.0, rtol=1e-4)


@pytest.mark.slow
def test_prior_samples_of_colour_photos_look_like_the_photos(photos64):
    # The default Gaussian model on 64x64 colour patches: without the frame the codes sat far
    # outside the prior (KL ~100 nats in 2-D after 10 epochs) and every sample decoded to one
    # dark colour (per-pixel spread across samples 0.03; the data's 0.32).
    order = np.random.default_rng(0).permutation(len(photos64))  # both photos in each part
    x, data = photos64[order[:1200]], photos64[order[1600:]]
    keras.utils.set_random_seed(0)
    vae = keras_vae.build_vae((64, 64, 3), latent_dim=2, likelihood="gaussian", sigma=None, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x, epochs=10, batch_size=64, verbose=0, callbacks=[keras_vae.StandardizeLatents(x)])
    samples = np.clip(vae.sample(100, seed=0).numpy(), 0.0, 1.0)
    assert samples.std(axis=0).mean() > 0.5 * data.std(axis=0).mean()
    # The samples' colours are the photos': mean colour and the spread of patch colours.
    np.testing.assert_allclose(samples.mean(axis=(0, 1, 2)), data.mean(axis=(0, 1, 2)), atol=0.08)
    patch_colours = samples.mean(axis=(1, 2)).std(axis=0)
    assert np.all(patch_colours > 0.5 * data.mean(axis=(1, 2)).std(axis=0))
    assert _mean_kl(vae, data) < 40


def test_the_frame_saves_loads_and_can_be_left_out(binary_digits, tmp_path):
    _, x_test = binary_digits
    vae = _trained(binary_digits)
    path = tmp_path / "vae.keras"
    vae.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["standardize_latents"] is True
    np.testing.assert_allclose(loaded.latent_frame.scale.numpy(), [0.3, 2.0, 1.1])
    np.testing.assert_allclose(
        loaded.reconstruct(x_test[:8]).numpy(), vae.reconstruct(x_test[:8]).numpy(), atol=1e-6
    )
    plain = keras_vae.VAE(
        *keras_vae.build_mlp((8, 8, 1), 3, hidden_units=(8,)), standardize_latents=False
    )
    assert not hasattr(plain, "latent_frame")
    with pytest.raises(ValueError, match="standardize_latents=True"):
        keras_vae.standardize_latents(plain, x_test[:8])


def test_the_callback_steps_after_each_epoch(binary_digits):
    x_train, _ = binary_digits
    vae = _trained(binary_digits, standardize=False)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(
        x_train[:512],
        epochs=2,
        batch_size=64,
        verbose=0,
        callbacks=[keras_vae.StandardizeLatents(x_train, max_examples=512)],
    )
    posterior = vae.posterior(x_train[:512])
    np.testing.assert_allclose(posterior.loc.numpy().mean(axis=0), 0.0, atol=1e-4)
    assert not np.allclose(vae.latent_frame.scale.numpy(), 1.0)


def test_the_served_signatures_apply_the_frame(binary_digits, tmp_path):
    _, x_test = binary_digits
    vae = _trained(binary_digits)
    path = export.export_saved_model(vae, tmp_path)
    served = tf.saved_model.load(path).signatures
    z = np.random.default_rng(1).standard_normal((5, 3)).astype("float32")
    np.testing.assert_allclose(served["decode"](z=z)["x"].numpy(), vae.decode(z).numpy(), atol=1e-5)
    mean = served["encode"](x=x_test[:5])["mean"].numpy()
    np.testing.assert_allclose(mean, vae.encode(x_test[:5])[0].numpy(), atol=1e-5)
