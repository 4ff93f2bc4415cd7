"""A reference hospital system (HIS) that runs as its own process: see ``app`` and ``store``."""
