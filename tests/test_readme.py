"""The README's promises: its set-up commands are the ones CI runs, and its example works."""

import pathlib
import re

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(heading):
    return README.split(heading, 1)[1].split("\n## ", 1)[0]


def test_the_test_command_is_what_ci_runs():
    setup = section("## Set-up: two commands")
    commands = [line for line in setup.splitlines() if line.startswith("python -m pip install")]
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert main_job.endswith("&& keras-vae-train")
    test_command = tests.split("&& ", 1)[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python -m pip install -q -e ".[test]"' in ci
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.M), test_command


def test_the_library_example_runs_and_gives_what_it_says(tmp_path, monkeypatch):
    (block,) = re.findall(r"```python\n(.*?)```", section("## The library in Python"), re.S)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(block.replace("epochs=30", "epochs=3"), scope)  # fewer epochs: the test's budget
    assert scope["mean"].shape == scope["scale"].shape == (5, 2)
    assert scope["images"].shape == scope["recon"].shape == (5, 8, 8, 1)
    np.testing.assert_allclose(scope["images"], scope["recon"], atol=1e-6)
    assert scope["samples"].shape == (16, 8, 8, 1)
    log_px, naive = np.asarray(scope["log_px"]), np.asarray(scope["naive"])
    assert log_px.shape == naive.shape == (100,) and np.isfinite(log_px).all()
    assert (tmp_path / "vae.keras").exists() and scope["vae"].latent_dim == 2


def test_the_front_page_stays_short_and_its_links_resolve():
    assert len(README.splitlines()) <= 250
    links = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)\)", README)
    assert {"docs/library.md", "docs/training.md", "docs/serving.md"} <= set(links)
    for link in links:
        assert (REPO / link).is_file(), link


def _documented_commands():
    """Every keras-vae-* command line in the README and docs/, continuation lines joined."""
    import shlex

    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.split("&&")[-1].strip()
                if line.startswith("keras-vae-"):
                    yield path.name, shlex.split(line, comments=True)


def test_every_documented_command_parses():
    from keras_vae.export import cli as export_cli
    from keras_vae.training import cli as train_cli
    from keras_vae.training import evaluate, sample
    from keras_vae.training.config import NAMED_DATA

    parsers = {
        "keras-vae-train": train_cli.build_parser,
        "keras-vae-evaluate": evaluate._parser,
        "keras-vae-export": export_cli._parser,
        "keras-vae-sample": sample._parser,
    }
    commands = list(_documented_commands())
    assert {argv[0] for _, argv in commands} == set(parsers), commands
    for source, argv in commands:
        try:
            args = parsers[argv[0]]().parse_args(argv[1:])
        except SystemExit:
            raise AssertionError(f"{source}: {' '.join(argv)} does not parse") from None
        if argv[0] == "keras-vae-train" and args.data in NAMED_DATA:
            train_cli.config_from_args(args)  # the offline examples are valid configs as well
