"""The canonical PyTorch VAE (pytorch/examples, `vae/main.py`) for the side-by-side benchmark.

Run by `benchmarks/torch_side_by_side.py` in a separate virtual environment's python, never
imported by keras-vae: it needs only the standard library, NumPy and PyTorch.

    ~/.venvs/torch/bin/python benchmarks/torch_vae_reference.py --data DIR --epochs 20

DIR holds `train.npy` (float32 `(N, 784)` pixels in [0, 1]) and `test.npy` (the held-out
digits, already binarized, so every side scores the same bits). The network and the loss are
the example's: fc1 784 -> 400 (ReLU), fc21 and fc22 400 -> 20 (mean, log-variance), fc3
20 -> 400 (ReLU), fc4 400 -> 784 and a sigmoid; the loss is the binary cross-entropy summed over
the pixels and the batch plus the closed-form KL; Adam at 1e-3, batches of 128, reshuffled
every epoch, the last partial batch kept. Each batch is binarized afresh from its pixels
(dynamic binarization, as `keras-vae-train --binarize`). The example's DataLoader (a PIL
transform per image) is replaced by indexing one in-memory tensor, which only makes PyTorch
faster. Prints one JSON line: the training loop's seconds, examples/s and the held-out
negative ELBO (nats per example, one posterior draw per digit).
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ExampleVAE(nn.Module):
    """784-400-20 encoder with two linear heads, 20-400-784 decoder ending in a sigmoid."""

    def __init__(self, pixels=784, hidden=400, latent=20):
        super().__init__()
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, pixels)

    def posterior(self, x):
        hidden = F.relu(self.fc1(x))
        return self.fc21(hidden), self.fc22(hidden)

    def pixel_probabilities(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mean, log_var = self.posterior(x)
        # The reparameterization trick: z = mean + sigma * eps, eps ~ N(0, I).
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.pixel_probabilities(z), mean, log_var


def summed_negative_elbo(probabilities, x, mean, log_var):
    """-ELBO summed over the batch: BCE(x, p) + KL(N(mean, exp(log_var)) || N(0, I)), where the
    KL is -1/2 * sum(1 + log_var - mean^2 - exp(log_var))."""
    reconstruction = F.binary_cross_entropy(probabilities, x, reduction="sum")
    kl = -0.5 * torch.sum(1.0 + log_var - mean.pow(2) - log_var.exp())
    return reconstruction + kl


def train(model, x_train, epochs, batch_size, learning_rate, generator):
    """The example's loop, epoch after epoch; returns the seconds it took and the last epoch's
    mean loss per example."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    n = len(x_train)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for first in range(0, n, batch_size):
            pixels = x_train[order[first : first + batch_size]]
            batch = torch.bernoulli(pixels, generator=generator)
            optimizer.zero_grad()
            probabilities, mean, log_var = model(batch)
            loss = summed_negative_elbo(probabilities, batch, mean, log_var)
            loss.backward()
            optimizer.step()
            total += loss.item()
    return time.perf_counter() - start, total / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with train.npy and test.npy")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x_train = torch.from_numpy(np.load(os.path.join(args.data, "train.npy")))
    x_test = torch.from_numpy(np.load(os.path.join(args.data, "test.npy")))
    model = ExampleVAE(pixels=x_train.shape[1])
    seconds, last_loss = train(
        model, x_train, args.epochs, args.batch_size, args.learning_rate, generator
    )
    model.eval()
    with torch.no_grad():
        probabilities, mean, log_var = model(x_test)
        held_out = summed_negative_elbo(probabilities, x_test, mean, log_var).item() / len(x_test)
    result = {
        "train_seconds": seconds,
        "examples_per_second": args.epochs * len(x_train) / seconds,
        "held_out_negative_elbo": held_out,
        "last_epoch_loss": last_loss,
        "epochs": args.epochs,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
