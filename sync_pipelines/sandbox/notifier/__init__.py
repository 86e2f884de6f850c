"""Where team notifications land: a Slack incoming-webhook lookalike and a generic JSON receiver.

Served at the sandbox server's root (/slack/services/..., /webhook/...); GET /_admin/notifications lists what
arrived. The production side is sync_pipelines/vendors/notifier.
"""
