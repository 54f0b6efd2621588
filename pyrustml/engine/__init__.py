"""pyrustml.engine."""
