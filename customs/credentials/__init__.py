"""W3C Verifiable Credentials for customs: trip and alert attestations (see README.md)."""
