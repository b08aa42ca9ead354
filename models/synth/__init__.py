"""Seeded synthetic US-style licence plate generator (OpenCV only)."""
