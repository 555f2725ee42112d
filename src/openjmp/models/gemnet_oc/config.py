"""Hyperparameters of the GemNet-OC backbone (field names as in JMP's backbone config).

Presets ``jmp_s`` / ``jmp_l`` live in ``src/openjmp/configs/models/<name>.yaml`` (generated from
``shared/reference/gemnet_oc/hparams_jmp_*.json``); load them with :func:`load_preset`.
Unknown keys are errors (``extra="forbid"``); use :meth:`GemNetOCConfig.from_jmp_dict` for dicts
taken from JMP checkpoints, which carry a few keys the public code ignores.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

#: keys found in published JMP hyper_parameters["backbone"] that the model does not use
JMP_IGNORED_KEYS = ("ln", "replace_scale_factors_with_ln", "old_gaussian_implementation")


class GemNetOCConfig(BaseModel):
    """All backbone hyperparameters. Sizes are feature widths; distances in Å."""

    model_config = ConfigDict(extra="forbid")

    num_targets: int = 1
    num_spherical: int = 7
    num_radial: int = 128
    num_blocks: int = 4
    emb_size_atom: int = 256
    emb_size_edge: int = 512
    emb_size_trip_in: int = 64
    emb_size_trip_out: int = 64
    emb_size_quad_in: int = 32
    emb_size_quad_out: int = 32
    emb_size_aint_in: int = 64
    emb_size_aint_out: int = 64
    emb_size_rbf: int = 16
    emb_size_cbf: int = 16
    emb_size_sbf: int = 32
    num_before_skip: int = 2
    num_after_skip: int = 2
    num_concat: int = 1
    num_atom: int = 3
    num_output_afteratom: int = 3
    num_atom_emb_layers: int = 2
    num_global_out_layers: int = 2
    regress_forces: bool = True
    regress_energy: bool = True
    direct_forces: bool = True
    use_pbc: bool = True
    scale_backprop_forces: bool = False
    rbf: dict[str, Any] = Field(default_factory=lambda: {"name": "gaussian"})
    rbf_spherical: dict[str, Any] | None = None
    envelope: dict[str, Any] = Field(default_factory=lambda: {"name": "polynomial", "exponent": 5})
    cbf: dict[str, Any] = Field(default_factory=lambda: {"name": "spherical_harmonics"})
    sbf: dict[str, Any] = Field(default_factory=lambda: {"name": "legendre_outer"})
    extensive: bool = True
    forces_coupled: bool = False
    activation: Literal["scaled_silu", "silu", "swish", None] = "scaled_silu"
    quad_interaction: bool = True
    atom_edge_interaction: bool = True
    edge_atom_interaction: bool = True
    atom_interaction: bool = True
    scale_basis: bool = False
    qint_tags: list[int] = Field(default_factory=lambda: [1, 2])
    num_elements: int = 120
    otf_graph: bool = False
    scale_file: str | None = None
    absolute_rbf_cutoff: float = 12.0
    #: per-graph radial cutoffs (Å; keys main, a2ee2a, qint, a2a), an openjmp extension: each
    #: graph's radial basis vanishes at its own cutoff, so the energy is continuous as atoms
    #: cross it. None (the original, published JMP-S/L): every basis uses absolute_rbf_cutoff,
    #: which is not zero at the graph cutoffs. Models with it must be given graphs built with
    #: exactly these cutoffs (and caps that do not truncate); docs/forces.md.
    rbf_cutoffs: dict[Literal["main", "a2ee2a", "qint", "a2a"], float] | None = None
    learnable_rbf: bool = False
    learnable_rbf_stds: bool = False
    unique_basis_per_layer: bool = False
    dropout: float | None = None
    edge_dropout: float | None = None

    @property
    def sbf_name(self) -> str:
        """``legendre_outer`` (the original) or ``legendre_outer_smooth`` (docs/forces.md)."""
        return (self.sbf.get("name") or "").lower()

    @property
    def is_smooth(self) -> bool:
        """Smooth dihedral basis and per-graph radial cutoffs: energies continuous in MD."""
        return self.sbf_name == "legendre_outer_smooth" and self.rbf_cutoffs is not None

    def check_graph_cutoffs(self, cutoffs: dict[str, float], source: str = "graph settings") -> None:
        """Raise ValueError when a model with ``rbf_cutoffs`` is given graphs of other cutoffs
        (``cutoffs``: Å per graph name, e.g. ``GOCGraphSettings.cutoffs``): a shorter graph cuts
        edges whose messages have not vanished (the energy jumps), a longer one only costs
        time. Models without ``rbf_cutoffs`` (the original) accept any cutoffs."""
        if self.rbf_cutoffs is None:
            return
        wrong = {g: (float(cutoffs[g]), float(c)) for g, c in self.rbf_cutoffs.items()
                 if g in cutoffs and abs(float(cutoffs[g]) - float(c)) > 1e-9}
        if wrong:
            detail = ", ".join(f"{g} {have:g} Å (model: {want:g} Å)" for g, (have, want) in wrong.items())
            raise ValueError(f"{source}: graph cutoffs differ from the model's rbf_cutoffs: {detail}; "
                             f"use the model's own graph settings (docs/forces.md)")

    def check_supported(self) -> None:
        """Raise ValueError for options this implementation does not provide."""
        problems = []
        if (self.rbf.get("name") or "").lower() != "gaussian":
            problems.append(f"rbf={self.rbf} (only gaussian)")
        if self.rbf_spherical not in (None, self.rbf):
            problems.append(f"rbf_spherical={self.rbf_spherical} (only the same as rbf)")
        if (self.envelope.get("name") or "").lower() != "polynomial":
            problems.append(f"envelope={self.envelope} (only polynomial)")
        if (self.cbf.get("name") or "").lower() != "spherical_harmonics":
            problems.append(f"cbf={self.cbf} (only spherical_harmonics)")
        if self.sbf_name not in ("legendre_outer", "legendre_outer_smooth"):
            problems.append(f"sbf={self.sbf} (only legendre_outer, legendre_outer_smooth)")
        if self.rbf_cutoffs is not None:
            missing = {"main", "a2ee2a", "qint", "a2a"} - set(self.rbf_cutoffs)
            if missing or any(not v > 0 for v in self.rbf_cutoffs.values()):
                problems.append(f"rbf_cutoffs={self.rbf_cutoffs} (needs positive main, a2ee2a, "
                                f"qint and a2a cutoffs)")
        if not (self.quad_interaction and self.atom_edge_interaction
                and self.edge_atom_interaction and self.atom_interaction):
            problems.append("all four interactions (quad, atom_edge, edge_atom, atom) must be on")
        if self.scale_basis:
            problems.append("scale_basis=True")
        if self.unique_basis_per_layer:
            problems.append("unique_basis_per_layer=True")
        if self.learnable_rbf or self.learnable_rbf_stds:
            problems.append("learnable_rbf / learnable_rbf_stds")
        if self.regress_forces and not self.direct_forces:
            problems.append("regress_forces=True requires direct_forces=True (as in JMP)")
        if problems:
            raise ValueError("unsupported GemNet-OC options: " + "; ".join(problems))

    @classmethod
    def from_jmp_dict(cls, d: dict[str, Any]) -> GemNetOCConfig:
        """Build from a JMP backbone dict, dropping the keys JMP itself ignores."""
        clean = {k: v for k, v in d.items() if k not in JMP_IGNORED_KEYS}
        return cls(**clean)


def preset_path(name: str) -> Path:
    return Path(str(resources.files("openjmp") / "configs" / "models" / f"{name}.yaml"))


def load_preset(name: str) -> GemNetOCConfig:
    """Backbone config of a named preset (``jmp_s`` or ``jmp_l``)."""
    path = preset_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no GemNet-OC preset {name!r} (looked for {path})")
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or "backbone" not in data:
        raise ValueError(f"{path}: expected a mapping with a 'backbone' key")
    return GemNetOCConfig(**data["backbone"])


def load_preset_file(path: str | Path) -> dict[str, Any]:
    """The whole preset mapping (backbone, embedding, heads) of a YAML file."""
    with open(path) as f:
        return yaml.safe_load(f)
