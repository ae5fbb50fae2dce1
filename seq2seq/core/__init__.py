"""The network and the one decoding path: torch only (no Hydra, Lightning, files or network)."""
