"""annbench: benchmark approximate-nearest-neighbour indexes on your own embeddings.

The package is laid out one concern a module (see DESIGN.md): datasets → scenarios → harness →
results → report / check. Importing it has no side effects and imports no index library.
"""

__version__ = "0.1.0"
