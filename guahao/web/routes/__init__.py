"""Route controllers, one module per area of the API."""
