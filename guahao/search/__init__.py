"""Indexing and querying hospitals, departments and doctors of the region."""
