"""Team notifications through a Slack-compatible incoming webhook or a generic JSON webhook."""
