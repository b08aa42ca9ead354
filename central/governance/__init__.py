"""Governance: users and roles, the hash-chained access log, audited search,
retention and legal holds, sharing with agencies, signed export bundles and the
transparency report. Every rule is enforced here, for the CLI and any other
front end alike."""
