"""Test-wide fixtures: real services (Redis, SQLite, PostgreSQL) started by the suite itself."""

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.databases",
    "tests.fixtures.platforms",
    "tests.fixtures.redis_cluster",
    "tests.fixtures.his_simulator",
    "tests.fixtures.search",
    "tests.fixtures.identity_provider",
]
