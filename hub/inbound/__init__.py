"""Inbound: the producer's service, a region's message store, the group commit, views, retention."""
