"""Rapture: a Matrix application-service bridge for IRC and other networks."""

__version__ = "0.1.0"
