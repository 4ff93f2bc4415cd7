"""The record of truth in SQL (SQLite embedded, PostgreSQL in production) and its migrations."""
