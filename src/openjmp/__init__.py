"""openjmp: Joint Multi-domain Pre-training of GemNet-OC atomistic foundation models.

Units everywhere inside the library: Å, eV, eV/Å, eV/Å³, e·Å. Readers convert at the boundary.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # lazy: `import openjmp` stays light (no torch / ase import until the calculator is used)
    if name == "JMPCalculator":
        from openjmp.calculator import JMPCalculator

        return JMPCalculator
    raise AttributeError(f"module 'openjmp' has no attribute {name!r}")
