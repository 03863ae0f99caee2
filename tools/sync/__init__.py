"""The sync client: ``python -m tools.sync``. See ``tools/sync/__main__.py`` for the commands."""
