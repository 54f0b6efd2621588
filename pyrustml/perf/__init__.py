"""pyrustml.perf."""
