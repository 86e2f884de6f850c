"""Xero webhooks: a receiver that verifies and stores events, and the inbox the sensor reads them from."""
