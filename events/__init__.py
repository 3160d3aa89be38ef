"""The wire format: CloudEvents models, the taxonomy they use, and the emitter SDK."""
