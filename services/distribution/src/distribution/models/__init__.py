"""Domain types and pure rules of distribution (no I/O), by role:

- `projections`: what we know of contents, ambassadors and charters; eligibility, targeting, the feed;
- `sharing`: shares, tracked links and the rules a share must pass (text, limits, quiet hours, slots);
- `authenticity`: similarity to the suggested text and to colleagues (MinHash, LSH band keys), the policy;
- `engagement`: clicks, connectors and their reports; UTM, bots, visitor hashes, signatures.
"""
