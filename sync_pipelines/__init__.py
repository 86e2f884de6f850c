"""Keep Xero, Segment, Salesforce and Intercom in step, on Dagster."""
