"""The datakiln version: recorded in every build and package."""

__version__ = "0.1.0"
