"""The Litestar application: HTTP API, authentication, later the pages."""
