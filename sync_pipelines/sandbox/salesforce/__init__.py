"""The Salesforce sandbox: login host, REST API, sObject Collections and Bulk API 2.0 queries of one org.

Served under /salesforce on the sandbox server, with admin routes under /_admin/salesforce; behaviour follows
the fact sheet /work/shared/api/salesforce.md, cited by section.
"""
