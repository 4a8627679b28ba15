"""Output-layout decoders and NMS: pure functions from raw model outputs to detections."""
