import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: the read-only folder handed to the project (reference fixtures, benchmark batch); beside the
#: checkout unless OPENJMP_SHARED names another place (a machine where the checkout travels alone)
SHARED = Path(os.environ.get("OPENJMP_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared folder is missing at {SHARED} (CI provides it beside the checkout)")
    return SHARED
