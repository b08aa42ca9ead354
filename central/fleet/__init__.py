"""Fleet: the device registry (devices, businesses, certificates, tokens), the
certificate authority, enrollment, the broker's configuration and ACL, and the
devices' own signed audit logs."""
