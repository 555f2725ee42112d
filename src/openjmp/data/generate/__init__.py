"""Real-physics mini datasets (EMT, GFN2-xTB) written in the on-disk layouts of the originals.

Entry points: `openjmp.data.generate.suite.generate_suite` (CLI: ``openjmp data generate``) and
`shipped_suite_dir` (the pre-generated ``small`` suite inside the package).
"""

from __future__ import annotations

from pathlib import Path


def shipped_suite_dir() -> Path:
    """Folder of the pre-generated ``small`` mini suite shipped with openjmp (one sub-folder
    per dataset, each with its ``CARD.md``)."""
    return Path(__file__).resolve().parents[2] / "assets" / "mini"
