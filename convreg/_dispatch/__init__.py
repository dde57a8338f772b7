"""Names to backend objects (registry, plugins), and the choice and call of one per call."""
