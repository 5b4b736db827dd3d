"""Shared fixtures: where the real models are (fetched by scripts/fetch-data.sh; a missing
folder fails the tests rather than skipping them)."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("KILN_CACHE", ROOT / ".cache")) / "models"


def real_models():
    found = sorted(MODELS.glob("*.onnx"))
    if not found:
        raise RuntimeError(f"no models in {MODELS}: run scripts/fetch-data.sh")
    return found


@pytest.fixture(scope="session")
def models_dir():
    return MODELS
