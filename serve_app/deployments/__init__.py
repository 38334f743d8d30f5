"""Ray Serve deployments: thin adapters that each own one resource."""
