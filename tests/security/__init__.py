"""The standing attack suite (see docs/security.md): each attack against a real
broker and real databases; a regression fails CI."""
