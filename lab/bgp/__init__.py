"""Calico's BGP mode with a real BIRD per node: its configuration (config), a client for its
control socket (birdc), and the sessions shown as calicoctl and birdc show them (status).
Pure and stdlib-only; running BIRD in a node's namespace is the engine's job (config.bird_argv)."""
