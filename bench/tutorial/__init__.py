"""The stack this service grew from, for bench/compare.py: see app.py."""
