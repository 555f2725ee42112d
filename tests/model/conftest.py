import json

import pytest
import torch

from openjmp.models.gemnet_oc.reference import build_reference_model


@pytest.fixture(scope="session")
def fixture_dir(shared_dir):
    return shared_dir / "reference" / "gemnet_oc"


@pytest.fixture(scope="session")
def fixture_case(fixture_dir):
    return json.loads((fixture_dir / "case.json").read_text())


@pytest.fixture(scope="session")
def small_model(fixture_dir, fixture_case):
    """The fixture's small GemNet-OC (random weights, non-zero scale factors), float64."""
    torch.set_num_threads(1)
    return build_reference_model(fixture_dir, fixture_case).double()
