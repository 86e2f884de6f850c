"""Where records come from: one module per vendor, each implementing `entity_sync.Source`."""
