"""Performance benchmarks of the provider and the local engine: ``python -m benchmarks``."""
