"""Code shared by every LCE service: config, logging, errors, gRPC setup, the language table, the job contract."""
