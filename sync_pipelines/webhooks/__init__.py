"""Xero and Intercom webhooks: one receiver that verifies and stores events, and the inbox sensors read them from."""
