"""Health: checks run in the background, and the /live, /ready and /health endpoints."""
