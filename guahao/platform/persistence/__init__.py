"""The record of truth in SQL (SQLite embedded, PostgreSQL in production) and its migrations."""

# The connectors' tables live on the same ``Base``; importing them here keeps
# ``Base.metadata`` whole for the migrations and their comparison with the models.
from guahao.platform.persistence import connector_tables as connector_tables
