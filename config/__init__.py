"""Configuration every layer takes: one typed settings object read from PRIVTRAIL_* variables."""
