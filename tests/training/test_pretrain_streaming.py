"""Pre-training from converted stores: streamed records and graphs equal the in-memory path,
split rules on store indices, sampler sizes/atom counts from metadata alone, DataLoader workers,
normalisation from a bounded subsample or fixed constants, bad constants, a short run."""

import json

import numpy as np
import pytest
import torch
from pretrain_helpers import make_two_domains, tiny_pretrain_config
from torch.utils.data import DataLoader

from openjmp.configuration import ConfigError, load_config
from openjmp.data.readers import read
from openjmp.data.readers.base import ReaderItem
from openjmp.data.record import AtomsRecord
from openjmp.data.splits import assign_splits, subsample
from openjmp.data.store import StoreDataset, convert
from openjmp.data.store.dataset import StoreMetadata
from openjmp.training.config import PretrainConfig, resolve_path
from openjmp.training.data import StoreGraphDataset, collate_graph_batch
from openjmp.training.normalization import NUM_ELEMENTS, fit_normalizer_from_records
from openjmp.training.pretrain import PretrainDataModule, PretrainError, run_pretraining
from openjmp.training.store_source import fit_subsample, split_indices, subsample_indices


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """extxyz sources of two domains and their converted stores (slabs_store, mols_store)."""
    folder = make_two_domains(tmp_path_factory.mktemp("stream"))
    for name in ("slabs", "mols"):
        convert(read(folder / f"{name}.extxyz", format="ase"), folder / f"{name}_store", progress=False,
                shard_size=10)  # several shards: global index → shard mapping is exercised
    return folder


def _config(domains, tmp_path, kind: str, **changes):
    suffix = ".extxyz" if kind == "memory" else "_store"
    base = {f"datasets.{i}.path": str(domains / f"{n}{suffix}") for i, n in enumerate(("slabs", "mols"))}
    for i in range(2):
        base[f"datasets.{i}.format"] = "ase" if kind == "memory" else None  # stores: detected
    base.update(changes)
    return load_config(PretrainConfig, data=tiny_pretrain_config(tmp_path, **base))


def _loaded(cfg) -> PretrainDataModule:
    dm = PretrainDataModule(cfg)
    dm.load()
    return dm


def _same_record(a: AtomsRecord, b: AtomsRecord) -> None:
    np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.forces, b.forces)
    assert a.energy == b.energy


def test_streamed_datasets_equal_in_memory_records_graphs_and_normalizers(domains, tmp_path):
    mem = _loaded(_config(domains, tmp_path, "memory"))
    streamed = _loaded(_config(domains, tmp_path, "store"))
    assert all(isinstance(ds, StoreGraphDataset) for ds in streamed.train_sets + streamed.val_sets)
    assert not any(isinstance(ds, StoreGraphDataset) for ds in mem.train_sets)
    for sets_mem, sets_str in ((mem.train_sets, streamed.train_sets), (mem.val_sets, streamed.val_sets)):
        for a, b in zip(sets_mem, sets_str):
            assert len(a) == len(b) > 0
            np.testing.assert_array_equal(np.asarray(a.natoms), b.natoms)
            for i in range(len(a)):
                ra, ga, ta = a[i]
                rb, gb, tb = b[i]
                _same_record(ra, rb)
                assert ta == tb
                for graph in ("main", "a2a", "a2ee2a", "qint"):
                    ea, eb = getattr(ga, graph), getattr(gb, graph)
                    assert torch.equal(ea.edge_index, eb.edge_index)
                    assert torch.equal(ea.cell_offset, eb.cell_offset)
    for na, nb in zip(mem.normalizers, streamed.normalizers):
        np.testing.assert_allclose(na.linear_reference, nb.linear_reference, rtol=1e-9, atol=1e-9)
        assert na.energy_std == pytest.approx(nb.energy_std, rel=1e-9)
        assert na.force_std == pytest.approx(nb.force_std, rel=1e-9)
    assert mem.elements == streamed.elements == [[8, 29], [1, 6, 7, 8]]
    # a streamed dataset holds no record and no graph: nothing grows while it is read
    ds = streamed.train_sets[0]
    ds[0]
    assert not hasattr(ds, "records") and not hasattr(ds, "_cache")


def _h2(i: int) -> AtomsRecord:
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.7 + 0.001 * i]])
    return AtomsRecord(np.array([1, 1]), pos, energy=float(i), forces=np.zeros((2, 3)), source=f"h2:{i}")


def test_store_split_rules_equal_the_in_memory_rules(tmp_path):
    labels = ["train", None, "val", None, "test", None, "train", None, None, "val"] * 7
    items = [ReaderItem(s, _h2(i)) for i, s in enumerate(labels)]
    convert(items, tmp_path / "store", progress=False)
    meta = StoreMetadata(tmp_path / "store")
    for seed in (0, 3):
        expected = assign_splits(items, {"val": 0.2}, seed=seed, rest="train")
        got = split_indices(meta, "train", "val", 0.2, seed)
        for name in ("train", "val"):
            assert [int(r.energy) for r in expected[name]] == got[name].tolist()
        for limit in (5, 17, 1000):
            want = [int(r.energy) for r in subsample(expected["train"], limit, seed)]
            assert subsample_indices(got["train"], limit, seed).tolist() == want
    assert "test" not in {labels[i] for i in split_indices(meta, "train", "val", 0.2, 0)["train"]}


def test_sampler_sizes_and_atoms_come_from_store_metadata(domains, tmp_path, monkeypatch):
    reads = []
    original = StoreDataset.get_raw

    def counting(self, index):
        reads.append(index)
        return original(self, index)

    monkeypatch.setattr(StoreDataset, "get_raw", counting)
    fixed = {"energy_mean": 0.0, "energy_std": 1.0, "force_std": 1.0}
    cfg = _config(domains, tmp_path, "store", **{
        "sampler.balance_atoms": True,
        "datasets.0.linear_reference": False, "datasets.0.normalization": fixed,
        "datasets.1.linear_reference": False, "datasets.1.normalization": fixed,
    })
    dm = _loaded(cfg)
    assert len(reads) == 4  # one label check per train and val set, no normaliser fit
    reads.clear()
    dm.train_dataloader()
    sampler = dm.sampler
    assert sampler.sizes == [len(ds) for ds in dm.train_sets]
    expected_natoms = np.concatenate([StoreMetadata(domains / n).natoms[ds.store.indices]
                                      for n, ds in zip(("slabs_store", "mols_store"), dm.train_sets)])
    np.testing.assert_array_equal(sampler.natoms, expected_natoms)
    assert set(expected_natoms[: len(dm.train_sets[0])]) == {9} and set(expected_natoms[len(dm.train_sets[0]):]) <= {3, 4, 5}
    batches = list(sampler)
    assert batches and reads == []  # the whole epoch's index stream without one record read


def test_store_graph_dataset_in_dataloader_workers(domains, tmp_path):
    dm = _loaded(_config(domains, tmp_path, "store"))
    ds = dm.train_sets[1]
    serial = [ds[i][0].positions for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=lambda s: [x[0].positions for x in s])
    parallel = [p for batch in loader for p in batch]
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    batch = collate_graph_batch([ds[i] for i in range(3)])
    assert batch.task_index.tolist() == [1, 1, 1]


def _synthetic_store(path, n: int, seed: int = 0):
    """Records of H/C/O clusters with E = Σ ref[Z] + noise (σ 0.05 eV), forces ~ N(0, 0.5²)."""
    rng = np.random.default_rng(seed)
    ref = {1: -13.6, 6: -1030.0, 8: -2040.0}
    items = []
    for i in range(n):
        z = rng.choice([1, 6, 8], size=int(rng.integers(3, 9)))
        z[0] = 6
        pos = np.cumsum(np.full((z.size, 3), 0.9), axis=0) + rng.normal(0, 0.01, (z.size, 3))
        e = sum(ref[int(k)] for k in z) + rng.normal(0, 0.05)
        items.append(ReaderItem(None, AtomsRecord(z.astype(np.int64), pos, energy=float(e),
                                                  forces=rng.normal(0, 0.5, (z.size, 3)), source=f"syn:{i}")))
    convert(items, path, progress=False)
    return ref


def test_normalizer_fitted_on_a_bounded_subsample_is_close_to_the_full_fit(tmp_path):
    ref = _synthetic_store(tmp_path / "syn", 2000)
    store = StoreDataset(tmp_path / "syn")
    full = fit_normalizer_from_records(fit_subsample(store, None, 0))
    sub = fit_normalizer_from_records(fit_subsample(store, 300, 0))
    again = fit_normalizer_from_records(fit_subsample(store, 300, 0))
    other = fit_normalizer_from_records(fit_subsample(store, 300, 1))
    assert sub == again and sub != other  # seeded: same seed, same constants
    for z, e in ref.items():
        assert full.linear_reference[z] == pytest.approx(e, abs=0.01)
        assert sub.linear_reference[z] == pytest.approx(full.linear_reference[z], abs=0.02)
    assert full.energy_std == pytest.approx(0.05, rel=0.1)
    assert sub.energy_std == pytest.approx(full.energy_std, rel=0.15)
    assert sub.force_std == pytest.approx(full.force_std, rel=0.05)
    assert full.force_std == pytest.approx(0.5, rel=0.03)


def test_subsample_size_is_configurable_per_dataset(domains, tmp_path, monkeypatch):
    reads = []
    original = StoreDataset.get_raw
    monkeypatch.setattr(StoreDataset, "get_raw", lambda self, i: reads.append(i) or original(self, i))
    _loaded(_config(domains, tmp_path, "store", **{"datasets.0.normalization": {"fit_records": 5},
                                                 "datasets.1.normalization": {"fit_records": 7}}))
    assert len(reads) == 4 + 5 + 7


def test_fixed_normalisation_constants(domains, tmp_path):
    ref_list = [0.0] * NUM_ELEMENTS
    ref_list[8], ref_list[29] = -4.5, -3.25
    ref_file = tmp_path / "ref.json"
    ref_file.write_text(json.dumps({"linear_reference": {"O": -4.5, "29": -3.25}}))
    for given in ({"O": -4.5, "Cu": -3.25}, {8: -4.5, 29: -3.25}, ref_list, str(ref_file)):
        cfg = _config(domains, tmp_path, "store", **{"datasets.0.normalization": {
            "linear_reference": given, "energy_mean": 0.25, "energy_std": 2.0, "force_std": 0.3}})
        norm = _loaded(cfg).normalizers[0]
        assert norm.linear_reference == ref_list
        assert (norm.energy_mean, norm.energy_std, norm.force_std) == (0.25, 2.0, 0.3)
    # fixed scales, fitted reference: the reference comes from the data, the scales as given
    cfg = _config(domains, tmp_path, "memory", **{"datasets.0.normalization": {
        "energy_mean": 0.0, "energy_std": 24.9, "force_std": 0.511}})
    norm = _loaded(cfg).normalizers[0]
    assert (norm.energy_mean, norm.energy_std, norm.force_std) == (0.0, 24.9, 0.511)
    assert {z for z, v in enumerate(norm.linear_reference) if v} == {8, 29}
    # a file given relative to the config file is found next to it
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "refs.json").write_text(json.dumps(ref_list))
    data = tiny_pretrain_config(tmp_path, **{"datasets.0.path": str(domains / "slabs_store"),
                                             "datasets.1.path": str(domains / "mols_store"),
                                             "datasets.0.format": None, "datasets.1.format": None,
                                             "datasets.0.normalization": {"linear_reference": "refs.json"}})
    import yaml

    (tmp_path / "cfg" / "p.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(PretrainConfig, tmp_path / "cfg" / "p.yaml")
    assert cfg.datasets[0].normalization.linear_reference == str(tmp_path / "cfg" / "refs.json")
    assert _loaded(cfg).normalizers[0].linear_reference == ref_list


@pytest.mark.parametrize("normalization, message", [
    ({"linear_reference": [0.0] * 100}, "100 values; expected 120"),
    ({"linear_reference": {"Xx": 1.0}}, "unknown element symbol 'Xx'"),
    ({"linear_reference": {"200": 1.0}}, "atomic number 200 outside"),
    ({"linear_reference": {"H": "abc"}}, "H: Input should be a valid number"),
    ({"energy_std": 0.0}, "energy_std"),
    ({"force_std": -1.0}, "force_std"),
    ({"energy_mean": float("nan")}, "finite"),
    ({"fit_records": 0}, "fit_records"),
    ({"energy_scale": 1.0}, "energy_scale"),
])
def test_bad_constants_are_config_errors(domains, tmp_path, normalization, message):
    with pytest.raises(ConfigError, match=message):
        _config(domains, tmp_path, "store", **{"datasets.0.normalization": normalization})


def test_bad_constants_files_and_switches(domains, tmp_path):
    with pytest.raises(ConfigError, match="linear_reference is false"):
        _config(domains, tmp_path, "store", **{"datasets.0.linear_reference": False,
                                              "datasets.0.normalization": {"linear_reference": {"H": 1.0}}})
    missing = tmp_path / "nope.json"
    cfg = _config(domains, tmp_path, "store", **{"datasets.0.normalization": {"linear_reference": str(missing)}})
    with pytest.raises(PretrainError, match=f"{missing} does not exist"):
        _loaded(cfg)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Qq": 2.0}))
    cfg = _config(domains, tmp_path, "store", **{"datasets.0.normalization": {"linear_reference": str(bad)}})
    with pytest.raises(PretrainError, match=f"{bad}: unknown element symbol 'Qq'"):
        _loaded(cfg)
    # streaming demanded from a source that is not a store
    cfg = _config(domains, tmp_path, "memory", **{"datasets.1.streaming": True})
    with pytest.raises(PretrainError, match="streaming needs a converted store"):
        _loaded(cfg)
    # streaming: false reads a store into memory (cached graphs)
    dm = _loaded(_config(domains, tmp_path, "store", **{"datasets.1.streaming": False}))
    assert isinstance(dm.train_sets[0], StoreGraphDataset) and not isinstance(dm.train_sets[1], StoreGraphDataset)


def test_environment_variables_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENJMP_TEST_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("OPENJMP_TEST_UNSET", raising=False)
    assert resolve_path("${OPENJMP_TEST_DATA}/oc20/train", tmp_path / "cfg") == tmp_path / "data" / "oc20" / "train"
    assert resolve_path("$OPENJMP_TEST_DATA/x", tmp_path) == tmp_path / "data" / "x"
    assert str(resolve_path("${OPENJMP_TEST_UNSET}/oc20", tmp_path)) == "${OPENJMP_TEST_UNSET}/oc20"
    data = tiny_pretrain_config(tmp_path, **{"datasets.0.path": "${OPENJMP_TEST_UNSET}/slabs"})
    cfg = load_config(PretrainConfig, data=data)
    with pytest.raises(PretrainError, match=r"\$\{OPENJMP_TEST_UNSET\}/slabs does not exist \(environment variable OPENJMP_TEST_UNSET not set\)"):
        _loaded(cfg)


def test_short_pretraining_run_from_stores(domains, tmp_path):
    cfg = _config(domains, tmp_path, "store", **{
        "datasets.1.path": str(domains / "mols.extxyz"), "datasets.1.format": "ase",  # mixed sources
        "datasets.0.normalization": {"fit_records": 10},
        "trainer.max_steps": 4, "trainer.val_every_n_steps": 2, "trainer.checkpoint_every_n_steps": 2,
        "optim.cosine_epochs": 1.0, "sampler.balance_atoms": True,
    })
    import lightning as L

    class Grab(L.Callback):
        def on_train_end(self, trainer, pl_module):
            self.factor = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
            self.per_epoch = trainer.datamodule.batches_per_epoch(trainer.world_size)

    grab = Grab()
    summary = run_pretraining(cfg, callbacks=[grab])
    assert summary["steps"] == 4 and len(summary["validation"]) == 2
    # cosine_epochs = 1: the cosine reaches min_lr_factor after one sampler epoch of batches
    assert grab.per_epoch == (22 + 22) // 4
    assert grab.factor(grab.per_epoch) == pytest.approx(0.1) and grab.factor(grab.per_epoch - 1) > 0.1
    for record in summary["validation"]:
        assert set(record["datasets"]) == {"slabs", "mols"}
        assert all(np.isfinite(m["force_mae_eV_per_A"]) for m in record["datasets"].values())
    from openjmp.models.registry import load_model

    _, mf = load_model(cfg.output_dir / "model.pt")
    assert mf.heads["slabs"]["elements"] == [8, 29]
    assert (cfg.output_dir / "checkpoints" / "last.ckpt").is_file()


def test_bf16_mixed_precision_run_from_stores(domains, tmp_path):
    """Mixed precision (as jmp_*.yaml use on GPUs; bf16 autocast on CPU here): head outputs in
    half precision are accumulated in float32, and the run gives finite losses."""
    cfg = _config(domains, tmp_path, "store", **{
        "trainer.precision": "bf16-mixed", "trainer.deterministic": False,
        "trainer.max_steps": 2, "trainer.val_every_n_steps": 2, "trainer.checkpoint_every_n_steps": 2,
    })
    summary = run_pretraining(cfg)
    assert summary["steps"] == 2 and summary["nan_batches"] == 0
    assert np.isfinite(summary["validation"][-1]["loss"])


def test_store_dataset_with_explicit_indices(domains):
    meta = StoreMetadata(domains / "mols_store")
    ds = StoreDataset(domains / "mols_store", indices=[5, 0, 5], metadata=meta)
    assert ds.meta is meta and len(ds) == 3
    assert ds[0].source == ds[2].source != ds[1].source
    np.testing.assert_array_equal(ds.natoms, meta.natoms[[5, 0, 5]])
    with pytest.raises(IndexError, match="indices outside"):
        StoreDataset(domains / "mols_store", indices=[len(meta)])
    with pytest.raises(ValueError, match="split or indices"):
        StoreDataset(domains / "mols_store", split="train", indices=[0])
