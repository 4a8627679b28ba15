"""MQTT with Home Assistant discovery: a bridge process fed by the daemon's detections."""
