"""The Faust application: judges every event, and the subject state it changes, against policy."""
