"""The fleet: many devices seen from one (central) broker. ``status`` reads what devices publish."""
