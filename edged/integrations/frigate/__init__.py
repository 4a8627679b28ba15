"""Frigate's zmq detector protocol, served by an edged model (`edged serve-detector`)."""
