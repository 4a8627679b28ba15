"""The five stages; each module has an ``open_stage(rt)`` entry point (see stage_main)."""
