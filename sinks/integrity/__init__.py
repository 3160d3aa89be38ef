"""Tamper evidence for the stored trail: hash chains over every stored row (chain.py), signed
checkpoints of their heads (signing.py, ledger.py), and `verify` (verify.py), which recomputes
them and names every row that was edited, deleted, inserted, reordered or cut off."""
