import numpy as np
import pytest
from ase.build import add_adsorbate, bulk, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

from openjmp.data import AtomsRecord, InvalidStructureError, collate


def good_record(**kw):
    base = dict(
        atomic_numbers=[8, 1, 1],
        positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]],
        energy=-1.0,
        forces=np.zeros((3, 3)),
        source="water.xyz#0",
        dataset="demo",
    )
    base.update(kw)
    return AtomsRecord(**base)


def test_valid_record_passes():
    good_record().validate()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(positions=[[0, 0, np.nan], [0.96, 0, 0], [-0.24, 0.93, 0]]), "non-finite"),
        (dict(positions=[[0, 0, np.inf], [0.96, 0, 0], [-0.24, 0.93, 0]]), "non-finite"),
        (dict(positions=[[0, 0, 0], [0, 0, 0], [-0.24, 0.93, 0]]), "same position"),
        (dict(atomic_numbers=[0, 1, 1]), "outside 1..118"),
        (dict(atomic_numbers=[119, 1, 1]), "outside 1..118"),
        (dict(atomic_numbers=[], positions=np.zeros((0, 3)), forces=None), "empty"),
        (dict(forces=np.zeros((2, 3))), "forces have shape"),
        (dict(energy=float("nan")), "non-finite energy"),
        (dict(pbc=[True, True, True], cell=[[1, 0, 0], [0, 1, 0], [1, 1, 0]]), "singular cell"),
        (dict(pbc=[True, True, True], cell=[[5, 0, 0], [0, 5, 0], [0, 0, -5]]), "negative volume"),
    ],
)
def test_bad_input_names_record_and_problem(change, message):
    with pytest.raises(InvalidStructureError) as err:
        good_record(**change).validate()
    assert message in str(err.value)
    assert "demo:water.xyz#0" in str(err.value)


def test_close_periodic_image_detected():
    # an atom at the cell boundary and another one ~0 Å away through the periodic image
    rec = AtomsRecord(
        atomic_numbers=[29, 29], positions=[[0.0, 0, 0], [3.999999, 0, 0]], cell=np.eye(3) * 4, pbc=True
    )
    with pytest.raises(InvalidStructureError, match="periodic image"):
        rec.validate()


def _slab_with_everything():
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    slab.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    slab.pbc = (True, True, False)
    slab.info["adsorption_energy"] = -1.25
    slab.calc = EMT()
    slab.get_potential_energy()
    slab.get_forces()
    return slab


def test_ase_round_trip_is_lossless():
    slab = _slab_with_everything()
    rec = AtomsRecord.from_atoms(slab, dataset="oc", source="slab#0").validate()
    assert rec.fixed.tolist() == [True] * 4 + [False] * (len(slab) - 4)
    assert rec.targets == {"adsorption_energy": -1.25}
    back = AtomsRecord.from_atoms(rec.to_atoms())
    for name in ("atomic_numbers", "positions", "cell", "pbc", "forces", "tags", "fixed"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name))
    assert back.energy == rec.energy
    assert back.targets == rec.targets
    assert (back.source, back.dataset) == ("slab#0", "oc")


def test_ase_round_trip_stress_bulk():
    atoms = bulk("Cu", "fcc", a=3.7)
    atoms.calc = EMT()
    atoms.get_stress()
    rec = AtomsRecord.from_atoms(atoms)
    assert rec.stress.shape == (3, 3)
    np.testing.assert_allclose(rec.stress, atoms.get_stress(voigt=False))
    back = AtomsRecord.from_atoms(rec.to_atoms())
    np.testing.assert_array_equal(back.stress, rec.stress)


def test_collate_offsets_and_missing_labels():
    water = good_record()
    slab = AtomsRecord.from_atoms(_slab_with_everything(), dataset="oc", source="slab#0")
    no_label = good_record(energy=None, forces=None, source="w#1")
    b = collate([water, slab, no_label])
    assert b.natoms.tolist() == [3, len(slab.atomic_numbers), 3]
    assert b.batch.tolist() == [0] * 3 + [1] * slab.natoms + [2] * 3
    assert b.pos.shape == (b.num_atoms, 3)
    assert b.cell.shape == (3, 3, 3)
    assert np.isnan(b.energy[2].item()) and b.energy[0].item() == -1.0
    assert b.forces[-3:].isnan().all()
    # tags: 2 for records without tags, the slab's own tags otherwise
    assert b.tags[:3].tolist() == [2, 2, 2]
    assert b.tags[3 : 3 + slab.natoms].tolist() == slab.tags.tolist()
    # targets: NaN where a record lacks one
    assert b.targets["adsorption_energy"][1].item() == -1.25
    assert np.isnan(b.targets["adsorption_energy"][0].item())
    b32 = b.to(dtype=__import__("torch").float32)
    assert b32.pos.dtype.is_floating_point and str(b32.pos.dtype) == "torch.float32"
    assert b32.atomic_numbers.dtype == b.atomic_numbers.dtype


def test_collate_rejects_empty():
    with pytest.raises(ValueError):
        collate([])
