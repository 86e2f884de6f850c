"""The Segment sandbox: the HTTP Tracking API (mirrors https://api.segment.io), and a workspace whose sources emit
messages to a Webhooks destination (workspace.py).

Served under /segment on the sandbox server, with admin routes under /_admin/segment; behaviour follows the fact
sheet /work/shared/api/segment.md, cited by section.
"""
