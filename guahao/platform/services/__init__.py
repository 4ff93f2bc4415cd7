"""Application services: each public method is one command (hold, submit, cancel, …)."""
