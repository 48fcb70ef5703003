"""The MistNet runtime: edges upload noisy feature records once, the cloud trains on them (DESIGN section 5)."""
