"""The recipe: which flags give the best held-out NLL on binarized MNIST per CPU minute.

Protocol (issue 12): training data binarized dynamically (a fresh Bernoulli draw of every batch
every epoch, `training.data.make_dataset(..., binarize=True)`), the held-out digits binarized
once (`training.data.binarize_once`, seed 0); held-out NLL = -mean `vae.log_likelihood(x, K)`,
the importance-weighted (IWAE) estimate. Training time is wall-clock time of `fit` (tracing,
the latent frame's step after each epoch and KL warm-up included), with the clock paused while
evaluating; a callback checks it after every call of the training step and stops the fit.

Four parts:

- sweep: one factor at a time from a base recipe (784-400-20 MLP, ELBO, Adam 1e-3, batch 128,
  as in the canonical PyTorch example), every run trained for the same wall-clock seconds,
  NLL with a small K on the first held-out digits; then the best level of each factor that
  beat the base, combined, at the same budget. The chosen recipe is the best run of the sweep.
- long: the chosen recipe and the reference (`benchmarks.reference`: the Keras example's
  training loop, batch 128, Adam 1e-3, with the chosen networks) trained for `--minutes`,
  NLL with K = 1000 on every held-out digit at 1, 2, 5 and 10 minutes.
- iwae vs elbo: the base trained with the ELBO for as many steps as IWAE k=5 took in the sweep.
- active units (`objectives.active_units` of `vae.encode(x_test)[0]`), with and without
  warm-up, from the sweep's runs.

Run: `python -m benchmarks.recipe /path/to/mnist-dev [--minutes 10] [--sweep-seconds 60]`
(writes `benchmarks/results/recipe.{md,json}`); `python -m benchmarks.recipe --quick` is a
smoke run on the offline digits28 (about a minute; results to a temporary folder).
"""

import argparse
import math
import os
import sys
import tempfile
import time

if __package__ in (None, ""):  # `python benchmarks/recipe.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from keras_vae.training.config import COSINE_FINAL_FRACTION  # noqa: E402

SEED = 0
NETWORKS = {
    "mlp 400": {"arch": "mlp", "hidden_units": (400,)},
    "mlp 512-256": {"arch": "mlp", "hidden_units": (512, 256)},
    "conv": {"arch": "conv", "filters": (32, 64), "dense_units": 16},
}
BASE = {
    "objective": "elbo",
    "k": 1,
    "warmup_epochs": 0,
    "free_bits": 0.0,
    "latent_dim": 20,
    "network": "mlp 400",
    "batch_size": 128,
    # Adam's rate; with `lr_final` it decays on a cosine to `lr_final` over the training budget.
    "learning_rate": 1e-3,
    "lr_final": None,
}
# (factor, level, changes to BASE); one factor at a time.
SWEEP = [
    ("objective", "iwae k=5", {"objective": "iwae", "k": 5}),
    ("KL warm-up", "5 epochs", {"warmup_epochs": 5}),
    ("free bits", "0.1", {"free_bits": 0.1}),
    ("latent size", "32", {"latent_dim": 32}),
    ("latent size", "50", {"latent_dim": 50}),
    ("network", "mlp 512-256", {"network": "mlp 512-256"}),
    ("network", "conv", {"network": "conv"}),
    ("batch size", "64", {"batch_size": 64}),
    ("batch size", "256", {"batch_size": 256}),
    ("learning rate", "3e-3 constant", {"learning_rate": 3e-3}),
    ("learning rate", "3e-3 cosine to 1e-4", {"learning_rate": 3e-3, "lr_final": 1e-4}),
]
# The smoke run keeps one level of the factors that take a different code path.
QUICK_LEVELS = ("iwae k=5", "5 epochs", "0.1", "conv", "3e-3 cosine to 1e-4")
# A level must beat the base by this much to enter the combined recipe: runs differ by about
# this much from the machine's noise alone (other jobs share the 2 cores).
MARGIN_NATS = 0.5
MARKS_MINUTES = (1, 2, 5, 10)
FINAL_K = 1000
TARGET_NATS = 90.0


# ------------------------------------------------------------------------------------------
# Recipes


def describe(recipe):
    """A recipe in one short line."""
    lr = f"{recipe['learning_rate']:g}"
    if recipe["lr_final"] is not None:
        lr += f" cosine to {recipe['lr_final']:g}"
    objective = f"iwae k={recipe['k']}" if recipe["objective"] == "iwae" else "elbo"
    return (
        f"{recipe['network']}, z={recipe['latent_dim']}, {objective}, "
        f"warm-up {recipe['warmup_epochs']}, free bits {recipe['free_bits']:g}, "
        f"batch {recipe['batch_size']}, lr {lr}"
    )


def command_line(recipe, data, epochs):
    """The `keras-vae-train` command of a recipe."""
    net = NETWORKS[recipe["network"]]
    parts = ["keras-vae-train", f"--data {data}", "--binarize", f"--arch {net['arch']}"]
    if net["arch"] == "mlp":
        parts.append("--hidden-units " + ",".join(str(u) for u in net["hidden_units"]))
    else:
        parts.append("--filters " + ",".join(str(f) for f in net["filters"]))
        parts.append(f"--dense-units {net['dense_units']}")
    parts += [f"--latent-dim {recipe['latent_dim']}", f"--objective {recipe['objective']}"]
    if recipe["objective"] == "iwae":
        parts.append(f"--k {recipe['k']}")
    if recipe["warmup_epochs"]:
        parts.append(f"--warmup-epochs {recipe['warmup_epochs']}")
    if recipe["free_bits"]:
        parts.append(f"--free-bits {recipe['free_bits']:g}")
    parts += [
        f"--batch-size {recipe['batch_size']}",
        f"--learning-rate {recipe['learning_rate']:g}",
        f"--epochs {epochs}",
    ]
    if recipe["lr_final"] is not None:
        # keras-vae-train's cosine ends at --learning-rate / 30 (COSINE_FINAL_FRACTION).
        parts.append("--lr-schedule cosine")
    line = " ".join(parts)
    fraction = recipe["lr_final"] and recipe["lr_final"] / recipe["learning_rate"]
    if fraction and abs(fraction - COSINE_FINAL_FRACTION) > 1e-3:
        line += f"  # the benchmark decayed to {recipe['lr_final']:g}, the flag to a thirtieth"
    return line


def build(recipe, shape, reference=False):
    """The recipe's model, compiled: keras-vae's, or the reference's with the same networks."""
    import keras

    import keras_vae
    from benchmarks import reference as reference_lib

    net = dict(NETWORKS[recipe["network"]])
    arch = net.pop("arch")
    keras.utils.set_random_seed(SEED)
    if reference:
        # The Keras example's loop: ELBO, Adam 1e-3, one step per call (as written).
        model = reference_lib.build_reference(
            shape, recipe["latent_dim"], arch=arch, seed=SEED, **net
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        return model
    model = keras_vae.build_vae(
        shape, recipe["latent_dim"], arch=arch, likelihood="bernoulli", seed=SEED,
        free_bits=recipe["free_bits"], objective=recipe["objective"], k=recipe["k"], **net,
    )  # fmt: skip
    return model


# ------------------------------------------------------------------------------------------
# Training against the clock


def _clock_callback():
    import keras

    class TrainingClock(keras.callbacks.Callback):
        """Stops the fit after `seconds` of training (or `max_steps` steps) and evaluates at the
        `marks` (training seconds) with the clock paused. Checked after every training call.

        With `lr` = (peak, final) the optimizer's rate follows a cosine from peak to final over
        the `seconds` of training: a schedule for a time budget (the CLI's would run over the
        epochs).
        """

        def __init__(self, seconds, marks=(), evaluate=None, max_steps=None, lr=None):
            super().__init__()
            self.seconds, self.marks, self.evaluate = seconds, list(marks), evaluate
            self.max_steps, self.lr = max_steps, lr
            self.evaluations = []

        def trained(self):
            return time.perf_counter() - self.start - self.paused

        def cpu_trained(self):
            return time.process_time() - self.cpu_start - self.cpu_paused

        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0
            self.cpu_start, self.cpu_paused = time.process_time(), 0.0
            self._set_lr()

        def _set_lr(self):
            if self.lr is None:
                return
            peak, final = self.lr
            fraction = min(1.0, self.trained() / self.seconds)
            rate = final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * fraction))
            self.model.optimizer.learning_rate.assign(rate)

        def steps(self):
            return int(self.model.optimizer.iterations.numpy())

        def on_train_batch_end(self, batch, logs=None):
            t = self.trained()
            while self.marks and t >= self.marks[0]:
                mark = self.marks.pop(0)
                wall, cpu = time.perf_counter(), time.process_time()
                row = {"mark_s": mark, "trained_s": t, "cpu_s": self.cpu_trained()}
                row.update(self.evaluate(self.model), steps=self.steps())
                self.evaluations.append(row)
                self.paused += time.perf_counter() - wall
                self.cpu_paused += time.process_time() - cpu
            out_of_steps = self.max_steps is not None and self.steps() >= self.max_steps
            if t >= self.seconds or out_of_steps:
                self.model.stop_training = True
            self._set_lr()

    return TrainingClock


def train(recipe, data, seconds, marks=(), evaluate=None, max_steps=None, reference=False):
    """Trains a recipe on the dynamically binarized training set for `seconds` of training.

    Returns `(model, run)`: `run` holds the training seconds (wall and process CPU), the steps
    and epochs done, and the evaluations at `marks`.
    """
    import keras

    import keras_vae
    from keras_vae.training.data import make_dataset, steps_per_epoch
    from keras_vae.training.trainer import _steps_per_execution

    x_train = data["x_train"]
    shape = tuple(x_train.shape[1:])
    model = build(recipe, shape, reference=reference)
    batch = 128 if reference else recipe["batch_size"]
    steps = steps_per_epoch(len(x_train), batch)
    lr = None
    if not reference:
        # As keras-vae-train compiles: many steps per call (a divisor of the epoch).
        model.compile(
            optimizer=keras.optimizers.Adam(recipe["learning_rate"]),
            steps_per_execution=_steps_per_execution(steps),
        )
        if recipe["lr_final"] is not None:
            lr = (recipe["learning_rate"], recipe["lr_final"])
    clock = _clock_callback()(seconds, marks, evaluate, max_steps=max_steps, lr=lr)
    callbacks = [clock]
    if not reference:
        # keras-vae-train's own callbacks: the latent frame's step, the warm-up.
        callbacks.append(keras_vae.StandardizeLatents(data["x_codes"]))
        if recipe["warmup_epochs"]:
            callbacks.insert(0, keras_vae.KLWarmup(recipe["warmup_epochs"]))
    ds = make_dataset(x_train, batch, shuffle=True, seed=SEED, binarize=True)
    model.fit(
        ds, epochs=10**6, steps_per_epoch=steps, callbacks=callbacks, shuffle=False, verbose=0
    )
    done = clock.steps()
    run = {
        "train_s": clock.trained(),
        "cpu_s": clock.cpu_trained(),
        "steps": done,
        "epochs": done / steps,
        "evaluations": clock.evaluations,
    }
    return model, run


# ------------------------------------------------------------------------------------------
# Held-out figures


def held_out(model, x, k, reference=False, like=None):
    """Held-out NLL (IWAE, K = `k`, nats), -ELBO (one draw) and active units on `x`.

    `like`: for the reference, a keras-vae model of the same networks, whose memory budget
    sets how many latents the reference decodes at once.
    """
    import numpy as np

    from benchmarks import reference as reference_lib
    from keras_vae import estimators, objectives

    start = time.perf_counter()
    if reference:
        decodes = estimators.pairs_per_chunk(like, k)
        ll = reference_lib.reference_log_likelihood(model, x, k, seed=0, max_decodes=decodes)
        elbo = reference_lib.reference_elbo(model, x, seed=0)
        means = model.encoder(x)[0]
    else:
        ll = model.log_likelihood(x, num_samples=k, seed=0)
        elbo = model.elbo(x, seed=0)
        means = model.encode(x)[0]
    active, _ = objectives.active_units(means)
    return {
        "nll": float(-np.mean(np.asarray(ll))),
        "negative_elbo": float(-np.mean(np.asarray(elbo))),
        "active_units": active,
        "eval_s": time.perf_counter() - start,
    }


def _line(label, run, figures):
    return (
        f"{label:<34} {run['epochs']:6.1f} ep {run['train_s']:6.0f} s "
        f"({run['cpu_s']:5.0f} CPU s)  NLL {figures['nll']:7.2f}  -ELBO "
        f"{figures['negative_elbo']:7.2f}  AU {figures['active_units']:2d}  "
        f"(eval {figures['eval_s']:.0f} s)"
    )


# ------------------------------------------------------------------------------------------
# The parts


def sweep_part(data, settings, report):
    """One factor at a time from BASE at equal training time, then the winners combined."""
    x_eval = data["x_test"][: settings["sweep_examples"]]
    k, seconds = settings["sweep_k"], settings["sweep_seconds"]
    levels = [s for s in SWEEP if not settings["quick"] or s[1] in QUICK_LEVELS]
    print(
        f"recipe: sweep, {len(levels) + 1} runs of {seconds:g} s of training each; NLL with "
        f"K={k} on the first {len(x_eval)} held-out digits",
        flush=True,
    )
    rows = []

    def one(factor, level, recipe):
        model, run = train(recipe, data, seconds)
        figures = held_out(model, x_eval, k)
        row = {"factor": factor, "level": level, "recipe": recipe, **run, **figures}
        rows.append(row)
        print("  " + _line(f"{factor}: {level}", run, figures), flush=True)
        report(rows)
        return row

    base = one("base", describe(BASE), dict(BASE))
    for factor, level, changes in levels:
        one(factor, level, {**BASE, **changes})
    # The best level of each factor that beat the base by the margin, all together.
    winners = {}
    for row in rows[1:]:
        if row["nll"] < base["nll"] - MARGIN_NATS:
            best = winners.get(row["factor"])
            if best is None or row["nll"] < best["nll"]:
                winners[row["factor"]] = row
    if len(winners) > 1:
        combined = dict(BASE)
        for row in winners.values():
            combined.update({k: v for k, v in row["recipe"].items() if v != BASE[k]})
        one("combined", " + ".join(r["level"] for r in winners.values()), combined)
    chosen = min(rows, key=lambda r: r["nll"])
    return {
        "seconds": seconds,
        "k": k,
        "examples": len(x_eval),
        "rows": rows,
        "chosen": chosen["recipe"],
        "chosen_from": f"{chosen['factor']}: {chosen['level']}",
    }


def long_part(data, recipe, settings, report):
    """The chosen recipe and the reference, `minutes` each, NLL (K=1000) at the marks."""
    x_test, k = data["x_test"], settings["final_k"]
    unit = settings["minute_s"]
    marks = sorted({m for m in MARKS_MINUTES if m <= settings["minutes"]} | {settings["minutes"]})
    like = build(recipe, tuple(data["x_train"].shape[1:]))
    out = {"minutes": settings["minutes"], "k": k, "examples": len(x_test), "runs": {}}
    for name, is_ref in (("recipe", False), ("reference", True)):
        print(
            f"recipe: {name} for {settings['minutes']:g} min of training, NLL with K={k} on "
            f"{len(x_test)} held-out digits at {marks} min",
            flush=True,
        )

        def evaluate(model, name=name, is_ref=is_ref):
            figures = held_out(model, x_test, k, reference=is_ref, like=like)
            print(
                f"  {name:<9} NLL {figures['nll']:7.2f}  -ELBO {figures['negative_elbo']:7.2f}  "
                f"AU {figures['active_units']:2d}  (eval {figures['eval_s']:.0f} s, clock paused)",
                flush=True,
            )
            return figures

        _, run = train(
            recipe, data, marks[-1] * unit, [m * unit for m in marks], evaluate, reference=is_ref
        )
        for row, minutes in zip(run["evaluations"], marks, strict=False):
            row["minutes"] = minutes
        out["runs"][name] = run
        print(
            f"  {name}: {run['epochs']:.1f} epochs in {run['train_s']:.0f} s "
            f"({run['cpu_s']:.0f} CPU s)",
            flush=True,
        )
        report(out)
    return out


def iwae_vs_elbo_part(data, sweep):
    """The base with the ELBO for exactly the steps IWAE k=5 took in its sweep run."""
    iwae = next(r for r in sweep["rows"] if r["factor"] == "objective")
    base = sweep["rows"][0]
    x_eval = data["x_test"][: sweep["examples"]]
    print(
        f"recipe: ELBO for the {iwae['steps']} steps ({iwae['epochs']:.1f} epochs) IWAE k=5 "
        f"trained in {sweep['seconds']:g} s",
        flush=True,
    )
    model, run = train(dict(BASE), data, 10 * sweep["seconds"] + 60, max_steps=iwae["steps"])
    figures = held_out(model, x_eval, sweep["k"])
    print("  " + _line("elbo at equal steps", run, figures), flush=True)
    pick = ("epochs", "steps", "train_s", "cpu_s", "nll", "negative_elbo", "active_units")
    return {
        "k": sweep["k"],
        "examples": sweep["examples"],
        "iwae": {key: iwae[key] for key in pick},
        "elbo_equal_steps": {key: {**run, **figures}[key] for key in pick},
        "elbo_equal_time": {key: base[key] for key in pick},
    }


def active_units_part(sweep):
    """Active units with and without warm-up (the sweep's base and warm-up runs)."""
    rows = sweep["rows"]
    warm = next(r for r in rows if r["factor"] == "KL warm-up")
    return {
        "latent_dim": BASE["latent_dim"],
        "without_warmup": rows[0]["active_units"],
        "with_warmup": warm["active_units"],
        "warmup_epochs": warm["recipe"]["warmup_epochs"],
        "without_warmup_nll": rows[0]["nll"],
        "with_warmup_nll": warm["nll"],
    }


# ------------------------------------------------------------------------------------------


def load(spec):
    """Training set, the binarized-once held-out set and the latent frame's code subset."""
    from keras_vae.training.data import binarize_once, load_dataset

    dataset = load_dataset(spec)
    x_test = binarize_once(dataset.x_test, SEED)
    x_codes = binarize_once(dataset.x_train[:2048], SEED)
    return {"x_train": dataset.x_train, "x_test": x_test, "x_codes": x_codes}


def settings_for(quick, minutes, sweep_seconds):
    if quick:
        return {
            "quick": True,
            "sweep_seconds": 1.0,
            "sweep_k": 10,
            "sweep_examples": 64,
            "minutes": 2,
            "minute_s": 1.0,  # a "minute" of the long part lasts a second
            "final_k": 20,
        }
    return {
        "quick": False,
        "sweep_seconds": sweep_seconds,
        "sweep_k": 200,
        "sweep_examples": 1000,
        "minutes": minutes,
        "minute_s": 60.0,
        "final_k": FINAL_K,
    }


def run(data_spec, quick=False, minutes=10, sweep_seconds=60.0, report=None):
    """Runs every part; returns the results (`report(result)` is called after each run)."""
    settings = settings_for(quick, minutes, sweep_seconds)
    data = load(data_spec)
    result = {
        "data": data_spec,
        "num_train": len(data["x_train"]),
        "num_test": len(data["x_test"]),
        "settings": settings,
        "machine": common.machine_info(),
        "complete": False,
    }
    report = report or (lambda r: None)

    def partial(name):
        def save(value):
            result[name] = value
            report(result)

        return save

    result["sweep"] = sweep_part(data, settings, lambda rows: partial("sweep")({"rows": rows}))
    result["active_units"] = active_units_part(result["sweep"])
    result["iwae_vs_elbo"] = iwae_vs_elbo_part(data, result["sweep"])
    report(result)
    result["long"] = long_part(data, result["sweep"]["chosen"], settings, partial("long"))
    epochs = max(1, round(result["long"]["runs"]["recipe"]["epochs"]))
    result["command"] = command_line(result["sweep"]["chosen"], data_spec, epochs)
    result["complete"] = True
    report(result)
    return result


def _nll_at(run, minutes):
    return next((e["nll"] for e in run["evaluations"] if e["minutes"] == minutes), None)


def _target_line(long):
    """Whether the recipe met the issue's target, and when each model first did."""
    parts = []
    for name, run in long["runs"].items():
        first = next((e for e in run["evaluations"] if e["nll"] <= TARGET_NATS), None)
        parts.append(
            f"{name} first at {first['minutes']} min ({first['nll']:.2f})"
            if first
            else f"{name} not within {fmt_minutes(run)}"
        )
    recipe_run = long["runs"].get("recipe")
    met = bool(recipe_run) and any(
        e["nll"] <= TARGET_NATS and e["minutes"] <= 10 for e in recipe_run["evaluations"]
    )
    short = f" (the runs were {long['minutes']:g} min, not 10)" if long["minutes"] < 10 else ""
    return (
        f"Target (<= {TARGET_NATS:g} nats within 10 minutes on 2 cores): "
        f"**{'met' if met else 'not met'}**{short}; " + "; ".join(parts) + "."
    )


def fmt_minutes(run):
    return f"{run['evaluations'][-1]['minutes']:g} min" if run["evaluations"] else "the run"


def markdown(result):
    fmt = common.fmt
    s = result["settings"]
    lines = [
        "# The recipe: best held-out NLL on binarized MNIST per CPU minute",
        "",
        f"Machine: {common.machine_line(result['machine'])}. The machine was shared with other "
        "agents running tests, so the timings are noisy. Every budget is wall-clock seconds of "
        "training; CPU s is the process's CPU time over both cores (up to twice the wall "
        "time): where it falls short, other jobs had the cores.",
        f"Data: {result['data']} ({result['num_train']} train, dynamically binarized; "
        f"{result['num_test']} held out, binarized once with seed {SEED})."
        + (" Quick smoke run: the figures mean nothing." if s["quick"] else ""),
        "",
    ]
    sweep = result.get("sweep", {})
    if sweep.get("rows"):
        lines += [
            f"## Sweep at equal training time ({fmt(s['sweep_seconds'])} s each)",
            "",
            f"One factor at a time from the base ({describe(BASE)}), then the levels that beat "
            f"the base by more than {MARGIN_NATS} nats together ('combined'); not the full cross "
            f"product. NLL = -mean IWAE log-likelihood with K={s['sweep_k']} on the first "
            f"{s['sweep_examples']} held-out digits; -ELBO one posterior draw; AU active units "
            f"of {BASE['latent_dim']} (or the run's latent size).",
            "",
            common.markdown_table(
                ["factor", "level", "epochs", "train s", "CPU s", "NLL", "-ELBO", "AU"],
                [
                    [
                        r["factor"],
                        r["level"],
                        f"{r['epochs']:.1f}",
                        f"{r['train_s']:.0f}",
                        f"{r['cpu_s']:.0f}",
                        f"{r['nll']:.2f}",
                        f"{r['negative_elbo']:.2f}",
                        f"{r['active_units']}/{r['recipe']['latent_dim']}",
                    ]
                    for r in sweep["rows"]
                ],
            ),
            "",
        ]
    if "chosen" in sweep:
        lines += [f"Chosen recipe ({sweep['chosen_from']}): {describe(sweep['chosen'])}.", ""]
    if "command" in result:
        lines += ["```", result["command"], "```", ""]
    au = result.get("active_units")
    if au:
        lines += [
            "## Active units",
            "",
            f"Base recipe at equal time: {au['without_warmup']} of {au['latent_dim']} active "
            f"without warm-up (NLL {au['without_warmup_nll']:.2f}), {au['with_warmup']} with "
            f"{au['warmup_epochs']} epochs of KL warm-up (NLL {au['with_warmup_nll']:.2f}); "
            "threshold Cov > 0.01 on the posterior means of the held-out digits.",
            "",
        ]
    ie = result.get("iwae_vs_elbo")
    if ie:
        lines += [
            "## IWAE k=5 against the ELBO",
            "",
            f"Base networks; NLL with K={ie['k']} on {ie['examples']} held-out digits.",
            "",
            common.markdown_table(
                ["training", "epochs", "train s", "CPU s", "NLL", "-ELBO", "AU"],
                [
                    [
                        name,
                        f"{r['epochs']:.1f}",
                        f"{r['train_s']:.0f}",
                        f"{r['cpu_s']:.0f}",
                        f"{r['nll']:.2f}",
                        f"{r['negative_elbo']:.2f}",
                        r["active_units"],
                    ]
                    for name, r in (
                        ("IWAE k=5 (sweep budget)", ie["iwae"]),
                        ("ELBO, the same steps", ie["elbo_equal_steps"]),
                        ("ELBO, the same time (sweep base)", ie["elbo_equal_time"]),
                    )
                ],
            ),
            "",
        ]
    long = result.get("long")
    if long and long.get("runs"):
        marks = sorted({e["minutes"] for r in long["runs"].values() for e in r["evaluations"]})
        unit = "s" if s["quick"] else "min"
        lines += [
            f"## The recipe against the reference, {fmt(long['minutes'])} {unit} each",
            "",
            f"NLL = -mean IWAE log-likelihood, K={long['k']}, all {long['examples']} held-out "
            "digits, at each mark of training time (the clock paused while evaluating). The "
            "reference is benchmarks/reference.py's loop (the Keras example: ELBO, Adam 1e-3, "
            "batch 128, one step per call, no warm-up or latent frame) with the recipe's "
            "networks, on the same binarized batches.",
            "",
            common.markdown_table(
                ["model", *[f"NLL at {m} {unit}" for m in marks], "epochs", "train s", "CPU s"],
                [
                    [
                        name,
                        *[fmt(_nll_at(r, m), 4) for m in marks],
                        f"{r['epochs']:.1f}",
                        f"{r['train_s']:.0f}",
                        f"{r['cpu_s']:.0f}",
                    ]
                    for name, r in long["runs"].items()
                ],
            ),
            "",
        ]
        if not s["quick"]:
            lines += [_target_line(long), ""]
    return "\n".join(lines).rstrip() + "\n"


def write(result, out_dir):
    """Writes `recipe.json` and `recipe.md` to `out_dir`, atomically."""
    from keras_vae.training.files import atomic_write_text

    os.makedirs(out_dir, exist_ok=True)
    common.write_json(os.path.join(out_dir, "recipe.json"), result)
    atomic_write_text(os.path.join(out_dir, "recipe.md"), markdown(result))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python -m benchmarks.recipe /work/shared/data/mnist-dev --minutes 10",
    )
    parser.add_argument("data", nargs="?", help="MNIST as training.data reads it (IDX folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run on digits28")
    parser.add_argument("--minutes", type=float, default=10, help="long runs' training minutes")
    parser.add_argument("--sweep-seconds", type=float, default=60, help="training per sweep run")
    parser.add_argument("--out", help="results folder (default benchmarks/results/ on a full run)")
    args = parser.parse_args(argv)
    if not args.data and not args.quick:
        parser.error("give the data's path (e.g. /work/shared/data/mnist-dev), or --quick")
    data = args.data or "digits28"
    out_dir = args.out or (tempfile.mkdtemp(prefix="keras-vae-recipe-") if args.quick else None)
    out_dir = out_dir or common.RESULTS_DIR
    print(
        f"Benchmarking on {common.machine_line(common.machine_info())}; the cores are shared "
        "with other jobs, so the timings are noisy.",
        flush=True,
    )
    result = run(
        data, args.quick, args.minutes, args.sweep_seconds, report=lambda r: write(r, out_dir)
    )
    print(markdown(result))
    print(f"Wrote {out_dir}/recipe.json and recipe.md.")


if __name__ == "__main__":
    main()
