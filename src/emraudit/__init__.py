"""emraudit: audit EMR access logs and detect privacy leaks."""

__version__ = "0.1.0"
