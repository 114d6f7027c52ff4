"""The declared dependency floors admit only versions that have every API busutils uses."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# The Keras APIs busutils uses that are younger than Keras 3.0, with the release that brought
# each (from the Keras release notes, checked against the published wheels).  Add a row when
# busutils starts using a newer API.
KERAS_APIS = {
    "layers.Pipeline": "3.6",  # augment: pipelines that stay tf.data-compatible
    "layers.RandomShear": "3.8",  # augment: the paper's shear
    "ops.rot90": "3.9",  # augment.RandomRightAngleRotation
}
# TensorFlow 2.16 is the first release whose tf.keras is Keras 3.
FIRST_TENSORFLOW_WITH_KERAS_3 = "2.16"


def declared_floor(name: str) -> Version:
    """The lowest version of ``name`` that pyproject.toml's dependencies allow."""
    for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
            assert floors, f"pyproject.toml: {line!r} has no '>=' floor"
            return max(floors)
    raise AssertionError(f"pyproject.toml does not depend on {name}")


def test_keras_floor_has_every_api_busutils_uses():
    floor = declared_floor("keras")
    too_new = {api: since for api, since in KERAS_APIS.items() if Version(since) > floor}
    assert not too_new, f"keras>={floor} admits versions without {too_new}"


@pytest.mark.parametrize("api", sorted(KERAS_APIS))
def test_listed_keras_api_exists(api):
    module, name = api.split(".")
    assert hasattr(getattr(keras, module), name), f"keras.{api} is missing from Keras {keras.__version__}"


def test_tensorflow_floor_is_a_keras_3_release():
    assert declared_floor("tensorflow") >= Version(FIRST_TENSORFLOW_WITH_KERAS_3)
