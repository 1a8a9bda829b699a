"""The REST gateway: the documented HTTP API, translated onto the session and execution gRPC services."""
