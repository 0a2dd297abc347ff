"""Tenancy: the region registry, agreements, and each region's own store and key."""
