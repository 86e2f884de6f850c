"""The Intercom sandbox: one workspace's REST API (contacts, companies, tags, segments, admins, conversations).

Served under /intercom on the sandbox server, with admin routes under /_admin/intercom; behaviour follows the
fact sheet /work/shared/api/intercom.md and the 2.16 OpenAPI description, cited by section.
"""
