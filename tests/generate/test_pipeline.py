"""Determinism, skips, resumability and atomic writes of the generation pipeline."""

import hashlib

import numpy as np
import pytest

from openjmp.data.generate import ani1x, oc20
from openjmp.data.generate.common import (
    SkipStructure,
    atomic_write_with,
    run_items,
)
from openjmp.data.generate.suite import CARD_FILE, generate_domain, read_card_info


def file_digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CARD_FILE}


@pytest.mark.parametrize("domain", ["mini-oc20", "mini-ani1x", "mini-transition1x", "mini-qm9",
                                    "mini-rmd17", "mini-md22", "mini-matbench"])
def test_same_seed_gives_identical_bytes(tiny_suite, tmp_path, domain):
    out, _ = tiny_suite
    # a different number of workers and chunking must not change the files either
    generate_domain(domain, tmp_path, size="tiny", seed=0, workers=1, progress=False,
                    chunk_size=1)
    first, second = file_digests(out / domain), file_digests(tmp_path / domain)
    assert first and first == second


def test_another_seed_gives_other_data(tiny_suite, tmp_path):
    out, _ = tiny_suite
    generate_domain("mini-oc20", tmp_path, size="tiny", seed=1, progress=False)
    assert file_digests(out / "mini-oc20") != file_digests(tmp_path / "mini-oc20")


def test_card_counts_match_info(tiny_suite):
    out, infos = tiny_suite
    for name, info in infos.items():
        card = read_card_info(out / name)
        assert card["counts"] == info["counts"]
        text = (out / name / CARD_FILE).read_text()
        for heading in ("## What", "## How", "## Calculator", "## Layout and units", "## Splits",
                        "## Counts", "## Generation time"):
            assert heading in text, (name, heading)


def test_unsupported_emt_element_is_skipped_and_counted(tmp_path, monkeypatch):
    good = oc20.plan("tiny", 0)[:1]
    bad = dict(good[0], metal="Fe", sid=1)
    monkeypatch.setattr(oc20, "plan", lambda size, seed: [good[0], bad])
    info = generate_domain("mini-oc20", tmp_path, size="tiny", seed=0, progress=False)
    assert info["skipped"] == {"emt-element": 1}
    assert info["kept_items"] == 1
    assert "emt-element" in (tmp_path / "mini-oc20" / CARD_FILE).read_text()


def test_rdkit_failure_is_skipped_and_counted(tmp_path, monkeypatch):
    items = [{"smiles": "C1CC", "n_conformers": 2}, {"smiles": "CC#N", "n_conformers": 2}]
    monkeypatch.setattr(ani1x, "plan", lambda size, seed: items)
    info = generate_domain("mini-ani1x", tmp_path, size="tiny", seed=0, progress=False)
    assert info["skipped"] == {"rdkit-embed": 1}
    assert info["counts"]["conformers"] == 2


def _flaky(item, rng):
    if item["fail"]:
        raise SkipStructure("xtb-scf: not converged")
    return {"value": np.asarray(rng.normal())}


def _must_not_run(item, rng):
    raise AssertionError("recomputed a cached chunk")


def test_results_are_cached_per_chunk_and_resumed(tmp_path):
    items = [{"fail": i == 2} for i in range(5)]
    first = run_items(_flaky, items, seed=3, domain="d", cache_dir=tmp_path, chunk_size=2,
                      progress=False)
    assert [("skip" in r) for r in first] == [False, False, True, False, False]
    assert str(first[2]["skip"]).startswith("xtb-scf")
    again = run_items(_must_not_run, items, seed=3, domain="d", cache_dir=tmp_path,
                      chunk_size=2, progress=False)
    for a, b in zip(first, again):
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k])
    # an interrupted run: one chunk missing -> only that chunk is recomputed
    sorted(tmp_path.glob("chunk_*.npz"))[1].unlink()
    resumed = run_items(_flaky, items, seed=3, domain="d", cache_dir=tmp_path, chunk_size=2,
                        progress=False)
    assert float(resumed[3]["value"]) == float(first[3]["value"])


def test_parallel_results_equal_serial(tmp_path):
    items = [{"fail": False} for _ in range(6)]
    serial = run_items(_flaky, items, seed=5, domain="p", cache_dir=tmp_path / "a",
                       chunk_size=2, workers=1, progress=False)
    parallel = run_items(_flaky, items, seed=5, domain="p", cache_dir=tmp_path / "b",
                         chunk_size=2, workers=2, progress=False)
    assert [float(r["value"]) for r in serial] == [float(r["value"]) for r in parallel]


def test_failed_writer_leaves_no_file(tmp_path):
    target = tmp_path / "data.h5"
    target.write_bytes(b"previous complete file")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, broken)
    assert target.read_bytes() == b"previous complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]


def test_cli_generates_a_domain(tmp_path):
    from openjmp.cli.main import main

    rc = main(["data", "generate", "--suite", "mini", "--size", "tiny", "--out", str(tmp_path),
               "--domains", "mini-matbench", "--workers", "1", "--no-progress"])
    assert rc == 0
    info = read_card_info(tmp_path / "mini-matbench")
    assert info["counts"]["structures"] == 6
    assert not (tmp_path / ".cache").exists()  # removed once the dataset is complete


def test_interrupted_domain_resumes_from_its_cache(tmp_path, monkeypatch):
    from openjmp.data.generate import matbench

    first = generate_domain("mini-matbench", tmp_path / "a", size="tiny", seed=0,
                            progress=False, keep_cache=True)
    assert list((tmp_path / "a" / ".cache").iterdir())
    # a second run must not compute anything: every chunk is cached
    monkeypatch.setattr(matbench, "work", _must_not_run)
    again = generate_domain("mini-matbench", tmp_path / "a", size="tiny", seed=0,
                            progress=False)
    assert again["counts"] == first["counts"]
    assert not (tmp_path / "a" / ".cache").exists()


def test_rerendered_card_keeps_the_recorded_summary(tiny_suite, tmp_path):
    import shutil

    from openjmp.data.generate.suite import rerender_card

    out, _ = tiny_suite
    copy = tmp_path / "mini-qm9"
    shutil.copytree(out / "mini-qm9", copy)
    before = read_card_info(copy)
    (copy / CARD_FILE).write_text((copy / CARD_FILE).read_text().replace("## What", "## Wot"))
    rerender_card(copy)
    assert read_card_info(copy) == before
    assert "## What" in (copy / CARD_FILE).read_text()
