"""The Xero sandbox: login and identity hosts (OAuth 2.0), connections and the Accounting API of one tenant.

Served under /xero on the sandbox server, with admin routes under /_admin/xero; behaviour follows the fact sheet
/work/shared/api/xero.md, cited by section.
"""
