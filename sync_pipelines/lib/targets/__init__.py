"""Where records go: one module per target, each a `deliveries.Target`: the messages a delivery derives, and how
they are sent."""
