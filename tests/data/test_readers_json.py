"""MatBench (pandas 'split' JSON, pymatgen structure dicts, official folds) and QMOF readers."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from openjmp.data.readers import DataFormatError, detect_format, read
from openjmp.data.readers.matbench import kfold_test_folds, matbench_id

RNG = np.random.default_rng(3)


def structure_dict(symbols, a=4.0, charge_suffix=False, occu=1.0):
    matrix = [[a, 0.0, 0.0], [0.3, a, 0.0], [0.0, 0.2, a]]
    sites = []
    for k, el in enumerate(symbols):
        abc = [(k + 0.5) / len(symbols), 0.25 + 0.1 * k, 0.5]
        xyz = (np.array(abc) @ np.array(matrix)).tolist()
        name = el + ("2-" if charge_suffix and el == "O" else "")
        sites.append(
            {
                "species": [{"element": name, "occu": occu}],
                "abc": abc,
                "xyz": xyz,
                "label": el,
                "properties": {},
            }
        )
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {
            "matrix": matrix,
            "pbc": [True, True, True],
            "a": a,
            "b": a,
            "c": a,
            "alpha": 90,
            "beta": 90,
            "gamma": 90,
            "volume": a**3,
        },
        "sites": sites,
    }


def write_matbench(tmp_path, n=23, task="jdft2d", column="exfoliation_en", gz=True, rows=None):
    # the target column comes first, as in some matbench files (look up by name, not position)
    data = rows or [
        [
            float(RNG.normal(100, 30)),
            structure_dict(["Mo", "S", "S"] if i % 2 else ["Ga", "O"], charge_suffix=True),
        ]
        for i in range(n)
    ]
    table = {"index": list(range(len(data))), "columns": [column, "structure"], "data": data}
    path = tmp_path / (f"matbench_{task}.json" + (".gz" if gz else ""))
    if gz:
        with gzip.open(path, "wt") as fh:
            json.dump(table, fh)
    else:
        path.write_text(json.dumps(table))
    return path, table


@pytest.mark.parametrize("n", [5, 23, 636, 1265, 4764])
def test_kfold_matches_sklearn(n):
    from sklearn.model_selection import KFold

    folds = kfold_test_folds(n)
    kf = KFold(n_splits=5, shuffle=True, random_state=18012019)
    for k, (train, test) in enumerate(kf.split(np.zeros(n))):
        assert np.array_equal(np.sort(test), np.flatnonzero(folds == k))
        assert np.array_equal(np.sort(train), np.flatnonzero(folds != k))


def test_matbench_ids():
    assert matbench_id("jdft2d", 0, 636) == "mb-jdft2d-001"
    assert matbench_id("log_gvrh", 41, 10987) == "mb-log-gvrh-00042"


def test_matbench_records_folds_and_units(tmp_path):
    from sklearn.model_selection import KFold

    path, table = write_matbench(tmp_path)
    assert detect_format(path) == "matbench"
    items = list(read(path))
    assert len(items) == 23
    rec = items[1].record
    assert rec.source == "matbench_jdft2d.json.gz:mb-jdft2d-02" and rec.dataset == "matbench_jdft2d"
    assert rec.atomic_numbers.tolist() == [42, 16, 16] and rec.pbc.all()
    np.testing.assert_array_equal(rec.cell, np.array(table["data"][1][1]["lattice"]["matrix"]))
    np.testing.assert_array_equal(rec.positions[2], table["data"][1][1]["sites"][2]["xyz"])
    assert rec.targets == {"exfoliation_en": table["data"][1][0]}  # meV/atom, as in the file
    assert items[0].record.atomic_numbers.tolist() == [31, 8]  # "O2-" species → O
    kf = KFold(n_splits=5, shuffle=True, random_state=18012019)
    for k, (_, test) in enumerate(kf.split(np.zeros(23))):
        assert sorted(i for i, (s, _) in enumerate(items) if s == f"fold{k}") == sorted(
            test.tolist()
        )
    fold2 = [s for s, _ in read(path, fold=2)]
    test2 = list(kf.split(np.zeros(23)))[2][1]
    assert sorted(i for i, s in enumerate(fold2) if s == "test") == sorted(test2.tolist())
    assert fold2.count("train") == 23 - len(test2)


def test_matbench_bad_inputs(tmp_path):
    rows = [[1.0, structure_dict(["Mo", "S"])] for _ in range(6)]
    rows[3][1] = structure_dict(["Mo", "Qq"])
    path, _ = write_matbench(tmp_path, rows=rows, gz=False)
    with pytest.raises(DataFormatError, match=r"mb-jdft2d-4: site 1: unknown element symbol 'Qq'"):
        list(read(path))
    reader = read(path, skip_bad=True)
    assert len(list(reader)) == 5 and reader.skipped == {"bad_record": 1}
    rows[3][1] = structure_dict(["Mo", "S"], occu=0.5)
    path, _ = write_matbench(tmp_path, rows=rows, gz=False)
    with pytest.raises(DataFormatError, match="mb-jdft2d-4: site 0 is disordered"):
        list(read(path))
    comp = tmp_path / "matbench_expt_gap.json"
    comp.write_text(
        json.dumps({"index": [0], "columns": ["composition", "gap expt"], "data": [["Fe2O3", 2.0]]})
    )
    with pytest.raises(DataFormatError, match="no 'structure' column"):
        list(read(comp))
    trunc = tmp_path / "matbench_phonons.json.gz"
    path, _ = write_matbench(tmp_path, task="phonons", column="last phdos peak")
    trunc.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataFormatError, match="matbench_phonons.json.gz: cannot read JSON"):
        list(read(trunc))


def write_qmof(folder, n=12, drop_structure_for=None):
    folder.mkdir()
    entries, structures = [], []
    for i in range(n):
        qid = f"qmof-{i:06x}"
        entries.append(
            {
                "qmof_id": qid,
                "name": f"MOF{i}",
                "info": {"natoms": 3},
                "outputs": {"pbe": {"bandgap": 1.0 + i / 10, "energy_total": -20.0 - i}},
            }
        )
        st = structure_dict(["Zn", "O", "C"])
        st["sites"][0]["label"] = "Zn1"  # labels are not always bare symbols
        if qid != drop_structure_for:
            structures.append({"qmof_id": qid, "name": f"MOF{i}", "structure": st})
    structures.reverse()  # join must be by qmof_id, not by position
    (folder / "qmof.json").write_text(json.dumps(entries))
    (folder / "qmof_structure_data.json").write_text(json.dumps(structures))
    return entries


def test_qmof_join_and_targets(tmp_path):
    folder = tmp_path / "qmof_database"
    entries = write_qmof(folder)
    assert detect_format(folder) == "qmof"
    items = list(read(folder))
    assert len(items) == 12
    rec = items[4].record
    assert rec.source == "qmof.json:qmof-000004"
    assert rec.targets == {"bandgap": 1.4} and rec.energy == -24.0
    assert rec.atomic_numbers.tolist() == [30, 8, 6] and rec.pbc.all()
    splits = [s for s, _ in read(folder / "qmof.json", split="jmp")]
    assert splits.count("train") == int(0.8 * 12) and splits.count("test") == int(0.1 * 12)
    assert len(entries) == 12


def test_qmof_missing_structure(tmp_path):
    folder = tmp_path / "q"
    write_qmof(folder, drop_structure_for="qmof-000002")
    with pytest.raises(DataFormatError, match="qmof-000002: no structure with this qmof_id"):
        list(read(folder, "qmof"))
    reader = read(folder, "qmof", skip_bad=True)
    assert len(list(reader)) == 11 and reader.skipped == {"bad_record": 1}


@pytest.mark.parametrize("n, fraction", [(40, 0.3), (101, 0.5), (977, 0.12)])
def test_stratified_folds_match_sklearn(n, fraction):
    from sklearn.model_selection import StratifiedKFold

    from openjmp.data.readers.matbench import stratified_test_folds

    labels = RNG.random(n) < fraction
    labels[0] = not labels[0]  # the first row's class is not always the majority
    folds = stratified_test_folds(labels)
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=18012019)
    for k, (_, test) in enumerate(skf.split(np.zeros(n), labels)):
        assert np.array_equal(np.sort(test), np.flatnonzero(folds == k))


def test_classification_task_gets_stratified_folds_from_the_reader(tmp_path):
    from sklearn.model_selection import StratifiedKFold

    labels = [bool(x) for x in RNG.random(60) < 0.35]
    rows = [[lab, structure_dict(["Cu", "Zn"])] for lab in labels]
    path, _ = write_matbench(tmp_path, task="mp_is_metal", column="is_metal", rows=rows)
    reader = read(path, format="matbench")
    splits = [item.split for item in reader]
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=18012019)
    for k, (_, test) in enumerate(skf.split(np.zeros(60), labels)):
        assert sorted(test.tolist()) == [i for i, s in enumerate(splits) if s == f"fold{k}"]
    assert reader.describe()["folds"] == "StratifiedKFold"
