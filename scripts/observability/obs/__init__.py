"""The checks of obscheck.py, one module per concern."""
