"""The accounts: one isolated runtime per vendor account (its client and its sources)."""
