"""The pre-generated ``small`` mini suite shipped inside the package: present, within the size
budget, readable by the real readers, and its cards match its contents."""

import pytest

from openjmp.data.generate import shipped_suite_dir
from openjmp.data.generate.suite import DOMAINS, read_card_info
from openjmp.data.readers import read

SHIPPED = shipped_suite_dir()
MAX_TOTAL_BYTES = 30 * 1024 * 1024


def count(path, fmt, **kw):
    reader = read(path, format=fmt, **kw)
    n = sum(1 for _ in reader)
    assert not sum(reader.skipped.values()), (path, reader.skipped)
    return n


def test_every_domain_is_shipped_within_the_size_budget():
    assert SHIPPED.is_dir(), f"missing shipped suite at {SHIPPED}"
    for name in DOMAINS:
        info = read_card_info(SHIPPED / name)
        assert info["size"] == "small" and info["dataset"] == name
        for rel in info["files"]:
            assert (SHIPPED / name / rel).is_file(), (name, rel)
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total <= MAX_TOTAL_BYTES, f"shipped suite is {total / 2**20:.1f} MiB"
    assert not list(SHIPPED.rglob(".cache")), "generation cache shipped by mistake"


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_card_counts_match_the_shipped_files(name):
    d = SHIPPED / name
    info = read_card_info(d)
    c = info["counts"]
    if name == "mini-oc20":
        for split, s in info["splits"].items():
            assert count(d / split, "aselmdb") == s["frames"]
        assert sum(s["frames"] for s in info["splits"].values()) == c["frames"]
    elif name == "mini-ani1x":
        assert count(d / "ani1x-release.h5", "ani1x") == c["conformers"]
    elif name == "mini-transition1x":
        assert count(d / "transition1x-release.h5", "transition1x") == c["frames"]
        for split, s in info["splits"].items():
            if s["frames"]:
                assert count(d / "transition1x-release.h5", "transition1x", split=split) \
                    == s["frames"]
    elif name == "mini-qm9":
        assert count(d / "dsgdb9nsd.xyz.tar.bz2", "qm9") == c["molecules"]
    elif name == "mini-rmd17":
        for key, n in c.items():
            if key.startswith("frames_"):
                mol = key.removeprefix("frames_")
                path = d / "rmd17" / "npz_data" / f"rmd17_{mol}.npz"
                assert count(path, "rmd17", split="official") == n
                assert n >= 300  # enough for 100 train + val + test
    elif name == "mini-md22":
        for key, n in c.items():
            if key.startswith("frames_"):
                mol = key.removeprefix("frames_")
                assert count(d / f"md22_{mol}.npz", "md22") == n
    elif name == "mini-matbench":
        for rel in info["files"]:
            assert count(d / rel, "matbench", fold=0) > 0
            assert count(d / rel, "matbench") == c["structures"]
    else:  # a new domain must get a check here
        raise AssertionError(f"no shipped-count check for {name}")
