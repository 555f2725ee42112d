import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory):
    """Every domain of the mini suite at size ``tiny`` (seed 0), generated once per session.

    Returns (folder, {dataset: card info}).
    """
    from openjmp.data.generate.suite import generate_suite

    out = tmp_path_factory.mktemp("mini-tiny")
    infos = generate_suite(out, size="tiny", seed=0, workers=1, progress=False)
    return out, infos
