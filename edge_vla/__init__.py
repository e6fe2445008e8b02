"""edge-vla."""
