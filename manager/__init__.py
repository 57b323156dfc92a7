"""podium.manager: the manager (store, control loops, gRPC services) and the `podium` CLI."""
