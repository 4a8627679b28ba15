"""edged: a real-time camera inference daemon for the Raspberry Pi 5."""

__version__ = "0.1.0"
