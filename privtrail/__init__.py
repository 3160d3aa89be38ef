"""privtrail: live data flows checked against the privacy policy that governs them."""

__version__ = "0.1.0"
