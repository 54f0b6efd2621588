"""pyrustml.io."""
