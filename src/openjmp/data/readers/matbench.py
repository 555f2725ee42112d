"""MatBench v0.1 ``matbench_<task>.json.gz`` (or ``.json``): a pandas DataFrame, orient "split".

Top-level keys ``index``, ``columns``, ``data``; columns are looked up by name: ``structure``
(pymatgen Structure dicts, see `_pymatgen`) and the target column(s). Every other column is a
graph-level target stored under its column name, in the file's unit (e.g. ``exfoliation_en``
meV/atom, ``log10(G_VRH)`` log10 GPa, ``e_form`` eV/atom, booleans as 0/1). Records are periodic
(pbc all True). Composition-only tasks (no ``structure`` column) are refused.

Ids follow matbench: ``mb-<task with _ → ->-<i+1>`` zero-padded to ``floor(log10 n) + 1``
digits. Folds: matbench's ``KFold(n_splits=5, shuffle=True, random_state=18012019)``, reproduced
by `kfold_test_folds` (numpy only; a test checks equality with scikit-learn). Default split name
``fold<k>`` = the fold (0..4) whose *test* part holds the record; with ``fold=k``: ``test`` for
that fold's test part, ``train`` for the rest. Classification tasks (``mp_is_metal``,
``expt_is_metal``, ``glass``) use matbench's ``StratifiedKFold(n_splits=5, shuffle=True,
random_state=18012019)`` on the label (its generator script says so; it reproduces the official
glass folds), reproduced by `stratified_test_folds` (tested against scikit-learn).

The file is parsed whole (JSON cannot be streamed without an extra dependency); the largest
task (mp_e_form, 132,752 structures) needs a few GB of memory.
Source ids: ``"<file>:<mb-id>"``.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator

import numpy as np

from openjmp.data.readers._pymatgen import structure_arrays
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.record import AtomsRecord

MATBENCH_SEED = 18012019
N_FOLDS = 5
CLASSIFICATION_TASKS = ("mp_is_metal", "expt_is_metal", "glass")


def kfold_test_folds(n: int, n_splits: int = N_FOLDS, seed: int = MATBENCH_SEED) -> np.ndarray:
    """Fold index (n,) whose test part holds each row, as scikit-learn's
    ``KFold(n_splits, shuffle=True, random_state=seed)``: shuffle ``arange(n)`` with
    ``RandomState(seed)``, cut into consecutive folds, the first ``n % n_splits`` one larger."""
    if n < n_splits:
        raise ValueError(f"cannot make {n_splits} folds of {n} rows")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, n // n_splits, dtype=np.int64)
    sizes[: n % n_splits] += 1
    folds = np.empty(n, dtype=np.int64)
    start = 0
    for k, size in enumerate(sizes):
        folds[order[start : start + size]] = k
        start += size
    return folds


def stratified_test_folds(labels: np.ndarray, n_splits: int = N_FOLDS,
                          seed: int = MATBENCH_SEED) -> np.ndarray:
    """Test fold (0..n_splits-1) of every row, as scikit-learn's ``StratifiedKFold(n_splits,
    shuffle=True, random_state=seed)`` assigns them (scikit-learn >= 0.22): classes in sorted
    order; fold i takes the labels at positions i, i + n_splits, ... of the sorted label list,
    so each class is spread over the folds as evenly as the order allows; then, class by class
    from one ``RandomState(seed)``, the class's fold numbers are shuffled onto its rows."""
    labels = np.asarray(labels).reshape(-1)
    _, first_row, lexical = np.unique(labels, return_index=True, return_inverse=True)
    # classes numbered by order of first appearance (scikit-learn's encoding)
    _, class_by_appearance = np.unique(first_row, return_inverse=True)
    encoded = class_by_appearance[lexical.reshape(-1)]
    num_classes = len(first_row)
    counts = np.bincount(encoded, minlength=num_classes)
    if np.all(n_splits > counts):
        raise ValueError(f"cannot make {n_splits} stratified folds: every class has fewer rows "
                         f"({counts.tolist()})")
    order = np.sort(encoded)
    allocation = np.asarray([np.bincount(order[i::n_splits], minlength=num_classes)
                             for i in range(n_splits)])
    rng = np.random.RandomState(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    for k in range(num_classes):
        for_class = np.arange(n_splits).repeat(allocation[:, k])
        rng.shuffle(for_class)
        folds[encoded == k] = for_class
    return folds


def matbench_id(task: str, i: int, n: int) -> str:
    digits = int(math.floor(math.log10(n))) + 1
    return f"mb-{task.replace('_', '-')}-{i + 1:0{digits}d}"


def load_json(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read JSON (truncated or not JSON?): {exc}") from exc


def _label(row: list, target_cols: list[tuple[int, str]], path) -> object:
    """The class label of a classification row (its one target column) for stratification."""
    if len(target_cols) != 1:
        raise DataFormatError(f"{path}: a classification task needs one target column, got "
                              f"{[c for _, c in target_cols]}")
    j = target_cols[0][0]
    return str(row[j]) if j < len(row) else "None"


class MatbenchReader(Reader):
    """Args: ``fold`` (0..4 or None), ``task`` (default from the file name)."""

    name = "matbench"

    def __init__(
        self,
        path,
        *,
        fold: int | None = None,
        task: str | None = None,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        self.task = task or self.path.name.split(".")[0].removeprefix("matbench_")
        if fold is not None and not 0 <= int(fold) < N_FOLDS:
            raise ValueError(f"matbench: fold must be 0..{N_FOLDS - 1}, got {fold}")
        self.fold = None if fold is None else int(fold)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "task": self.task,
            "fold": self.fold,
            "kfold_seed": MATBENCH_SEED,
            "folds": "StratifiedKFold" if self.task in CLASSIFICATION_TASKS else "KFold",
        }

    def _items(self) -> Iterator[ReaderItem]:
        table = load_json(self.path)
        if not isinstance(table, dict) or not {"columns", "data"} <= set(table):
            raise DataFormatError(
                f"{self.path}: expected a pandas 'split' JSON object with 'columns' and 'data'"
            )
        columns = list(table["columns"])
        if "structure" not in columns:
            raise DataFormatError(
                f"{self.path}: no 'structure' column (composition-only task?); columns: {columns}"
            )
        s_col = columns.index("structure")
        target_cols = [(i, c) for i, c in enumerate(columns) if i != s_col]
        rows = table["data"]
        n = len(rows)
        if self.task in CLASSIFICATION_TASKS:
            folds = stratified_test_folds([_label(row, target_cols, self.path) for row in rows])
        else:
            folds = kfold_test_folds(n)
        fname = self.path.name
        for i, row in enumerate(rows):
            mb_id = matbench_id(self.task, i, n)
            where = f"{self.path}:{mb_id}"
            try:
                if len(row) != len(columns):
                    raise DataFormatError(
                        f"{where}: row has {len(row)} values for {len(columns)} columns"
                    )
                z, pos, cell = structure_arrays(row[s_col], where)
                targets = {}
                for j, col in target_cols:
                    value = row[j]
                    if isinstance(value, bool) or isinstance(value, (int, float)):
                        targets[col] = float(value)
                    elif value is None:
                        targets[col] = float("nan")
                    else:
                        raise DataFormatError(f"{where}: column {col!r} is not numeric: {value!r}")
                if any(not math.isfinite(v) for v in targets.values()):
                    raise DataFormatError(f"{where}: non-finite target {targets}")
            except DataFormatError as exc:
                self.bad("bad_record", str(exc))
                continue
            if self.fold is None:
                split = f"fold{folds[i]}"
            else:
                split = "test" if folds[i] == self.fold else "train"
            yield ReaderItem(
                split,
                AtomsRecord(
                    atomic_numbers=z,
                    positions=pos,
                    cell=cell,
                    pbc=True,
                    targets=targets,
                    source=f"{fname}:{mb_id}",
                    dataset=f"matbench_{self.task}",
                ),
            )
