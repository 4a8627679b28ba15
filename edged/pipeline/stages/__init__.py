"""The five stage processes; each module has one ``run(setup)`` entry point."""
