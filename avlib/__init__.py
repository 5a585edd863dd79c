"""avlib."""
