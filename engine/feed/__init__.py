"""Market-data feeds: depth synchronisation and book maintenance."""
