"""The customs office: receiver, store, console, audit chain and credentials (see README.md)."""
