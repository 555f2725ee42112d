"""Graph construction: periodic radius graphs (vesin) and edge geometry (differentiable)."""

from openjmp.data.graphs.radius import RadiusGraph, edge_vectors, max_neighbors_mask, radius_graph

__all__ = ["RadiusGraph", "edge_vectors", "max_neighbors_mask", "radius_graph"]
