"""Benchmarks: scripts that measure the bridge through real servers and print one JSON object."""
