"""Sequences: steps a coach links to an offering, run for each order of it."""
