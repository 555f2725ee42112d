"""Evaluation metrics (pure numpy, float64): regression, forces, classification.

Units are those of the inputs (eV, eV/Å, ...); helpers that report meV multiply explicitly.
"""

from __future__ import annotations

import numpy as np


def regression_metrics(pred, true) -> dict[str, float]:
    """MAE, RMSE, max absolute error and R² of scalar predictions; NaN targets are ignored."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    keep = np.isfinite(true)
    pred, true = pred[keep], true[keep]
    if true.size == 0:
        return {"count": 0, "mae": float("nan"), "rmse": float("nan"), "max_abs_error": float("nan"), "r2": float("nan")}
    err = pred - true
    ss_tot = float(((true - true.mean()) ** 2).sum())
    return {
        "count": int(true.size),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "max_abs_error": float(np.abs(err).max()),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
    }


def force_metrics(pred, true) -> dict[str, float]:
    """Force errors over atoms (N, 3): component MAE/RMSE, per-atom L2 MAE, mean cosine."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    true = np.asarray(true, dtype=np.float64).reshape(-1, 3)
    keep = np.isfinite(true).all(1)
    pred, true = pred[keep], true[keep]
    if true.shape[0] == 0:
        return {"count": 0, "mae": float("nan"), "rmse": float("nan"), "l2_mae": float("nan"), "cosine": float("nan")}
    err = pred - true
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)
    valid = norms > 1e-12
    cos = (pred * true).sum(1)[valid] / norms[valid]
    return {
        "count": int(true.shape[0]),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "l2_mae": float(np.linalg.norm(err, axis=1).mean()),
        "cosine": float(cos.mean()) if cos.size else float("nan"),
    }


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (probability that a positive outranks a negative; ties count ½)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    i = 0
    while i < scores.size:
        j = i
        while j + 1 < scores.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(probabilities, labels) -> dict[str, float]:
    """Binary classification: accuracy at 0.5, ROC-AUC, counts."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    keep = np.isfinite(y)
    p, y = p[keep], y[keep].astype(bool)
    return {
        "count": int(y.size),
        "accuracy": float(((p >= 0.5) == y).mean()) if y.size else float("nan"),
        "roc_auc": roc_auc(p, y),
        "positives": int(y.sum()),
    }
