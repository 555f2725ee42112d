"""Neural network models (GemNet-OC backbone, output heads, the JMP model container)."""
