"""The reference checker passes on the shared fixture (float64 + float32, stored and own
graphs, single systems and the batch) and the CLI verb reports it."""


from openjmp.cli.main import main
from openjmp.models.gemnet_oc.reference import check_reference


def test_check_reference_passes(fixture_dir):
    report = check_reference(fixture_dir)
    assert report.passed, report.format_table()
    checked = {(r.dtype, r.graphs, r.system.startswith("batch:")) for r in report.rows
               if r.status == "ok"}
    for dtype in ("float64", "float32"):
        for mode in ("stored", "own"):
            for batch in (False, True):
                assert (dtype, mode, batch) in checked
    f64 = [r for r in report.rows if r.dtype == "float64" and r.status == "ok"]
    assert max(r.err for r in f64) <= 1e-8
    outputs = {r.output for r in f64}
    for name in ("x_E", "x_F", "V_st", "D_st", "energy_finetune", "forces_grad_finetune",
                 "forces_direct_finetune", "energy_pretrain_heads", "forces_grad_pretrain_heads",
                 "forces_direct_pretrain_heads", "dE_dstrain_finetune"):
        assert name in outputs


def test_check_reference_detects_a_wrong_weight(fixture_dir, tmp_path):
    """A perturbed copy of the fixture must fail (the checker is not vacuous)."""
    import shutil

    import torch

    for f in fixture_dir.iterdir():
        if f.name != "state_dict.pt":
            shutil.copy(f, tmp_path / f.name)
    sd = torch.load(fixture_dir / "state_dict.pt", weights_only=True)
    key = "backbone.int_blocks.0.quad_interaction.mlp_sbf.bilinear.linear.weight"
    sd[key] = sd[key] * 1.001
    torch.save(sd, tmp_path / "state_dict.pt")
    # keep the .npz out of the way so the perturbed .pt is used
    (tmp_path / "state_dict.npz").unlink()
    report = check_reference(tmp_path, dtypes=("float64",), graph_modes=("stored",),
                             include_batch=False)
    assert not report.passed
    assert any(r.output == "x_E" and r.status == "FAIL" for r in report.rows)


def test_cli_check_reference(fixture_dir, capsys):
    rc = main(["check-reference", str(fixture_dir), "--dtype", "float64", "--graphs", "stored",
               "--no-batch"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[-1].startswith("check-reference: PASS")
