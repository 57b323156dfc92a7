"""podium.manager: the manager (store, control loops, gRPC services), run by podium.manager.main."""
