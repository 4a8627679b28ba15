"""Tracks, zones and lines (issue 20): run in the postprocess stage, per camera."""
