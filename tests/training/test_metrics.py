import numpy as np
import pytest

from openjmp.training.metrics import (
    classification_metrics,
    force_metrics,
    regression_metrics,
    roc_auc,
)


def test_regression_metrics_ignore_nan_targets():
    m = regression_metrics([1.0, 2.0, 5.0], [1.5, np.nan, 3.0])
    assert m["count"] == 2
    assert m["mae"] == pytest.approx(1.25)
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 4) / 2))


def test_force_metrics():
    pred = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    true = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    m = force_metrics(pred, true)
    assert m["mae"] == pytest.approx(1 / 6)
    assert m["l2_mae"] == pytest.approx(0.5)
    assert m["cosine"] == pytest.approx(1.0)


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    y = rng.random(60) > 0.4
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(s, y) == pytest.approx(pairwise)
    assert np.isnan(roc_auc([0.1, 0.2], [True, True]))
    c = classification_metrics([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1])
    assert c["accuracy"] == 0.5 and c["roc_auc"] == pytest.approx(0.75)
