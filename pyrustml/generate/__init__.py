"""pyrustml.generate."""
