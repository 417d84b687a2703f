"""What `pip install` puts on a user's path: one name, keras_vae, and the four console scripts."""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {
    "keras-vae-train": "keras_vae.training.cli",
    "keras-vae-evaluate": "keras_vae.training.evaluate",
    "keras-vae-export": "keras_vae.export.cli",
    "keras-vae-sample": "keras_vae.training.sample",
}

CHECK = """
import importlib.util, json
found = {name: importlib.util.find_spec(name) is not None for name in ("training", "export")}
import keras_vae.training, keras_vae.export
print(json.dumps({"found": found, "training": keras_vae.training.__file__,
                  "export": keras_vae.export.__file__}))
"""


@pytest.mark.slow
def test_only_keras_vae_is_importable_outside_the_repository(tmp_path):
    # A user's own training.py or export/ must not be shadowed, nor shadow ours.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import json

    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["found"] == {"training": False, "export": False}
    # The installed subpackages are the repository's top-level folders.
    assert pathlib.Path(seen["training"]).parent == REPO / "training"
    assert pathlib.Path(seen["export"]).parent == REPO / "export"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_run_the_namespaced_modules(script):
    path = shutil.which(script)
    assert path, f"{script} is not installed: pip install -e ."
    assert SCRIPTS[script] in pathlib.Path(path).read_text()


def test_the_library_imports_nothing_from_training_or_export():
    # The data flows one way: keras_vae knows nothing of files or flags.
    for path in (REPO / "keras_vae").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                assert not name.startswith(("keras_vae.training", "keras_vae.export")), (path, name)
                assert name.split(".")[0] not in {"training", "export"}, (path, name)
