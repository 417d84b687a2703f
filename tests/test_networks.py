import keras
import numpy as np
import pytest

from keras_vae import networks


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (9, 13, 3)])
def test_conv_pair_maps_images_of_any_size_and_back(shape):
    encoder, decoder = networks.build_conv(shape, latent_dim=3)
    x = np.zeros((2, *shape), "float32")
    assert encoder(x).shape == (2, 6)
    assert decoder(np.zeros((2, 3), "float32")).shape == (2, *shape)


@pytest.mark.parametrize("shape", [(5,), (8, 8, 1)])
def test_mlp_pair_keeps_the_example_shape(shape):
    encoder, decoder = networks.build_mlp(shape, latent_dim=2, hidden_units=(16,))
    assert encoder(np.zeros((3, *shape), "float32")).shape == (3, 4)
    assert decoder(np.zeros((3, 2), "float32")).shape == (3, *shape)
    assert [layer.units for layer in encoder.layers if isinstance(layer, keras.layers.Dense)] == [
        16,
        4,
    ]


@pytest.mark.parametrize("latent_dim", [0, -2, 1.5, True])
def test_latent_dim_must_be_a_positive_integer(latent_dim):
    with pytest.raises(
        ValueError, match=f"latent_dim must be an integer >= 1; received latent_dim={latent_dim!r}"
    ):
        networks.build_mlp((4,), latent_dim=latent_dim)


def test_conv_rejects_flat_inputs_with_advice():
    with pytest.raises(ValueError, match=r"\(H, W, C\); received input_shape=\(64,\).*arch='mlp'"):
        networks.build_conv((64,), latent_dim=2)


def test_input_shape_must_be_positive_ints():
    with pytest.raises(ValueError, match="received input_shape=\\(None, 4\\)"):
        networks.build_mlp((None, 4), latent_dim=2)
