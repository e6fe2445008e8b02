"""The daemon's HTTP server (aiohttp): health, metrics, and (later) WHIP ingest."""
