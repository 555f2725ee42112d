"""openjmp: Joint Multi-domain Pre-training of GemNet-OC atomistic foundation models.

Units everywhere inside the library: Å, eV, eV/Å, eV/Å³, e·Å. Readers convert at the boundary.
"""

__version__ = "0.1.0"
