"""Where records go: one module per vendor, each implementing `entity_sync.Target`."""
