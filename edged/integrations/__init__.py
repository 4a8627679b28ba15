"""Bridges to other programs: Frigate (detector protocol) and MQTT / Home Assistant."""
