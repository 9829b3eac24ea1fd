"""Customs side: the alert receiver (`sealtrail customs watch`) and trip reports.

See README.md here: trust (trust file or ledger registry), store (SQLite), receive (the checks),
watch (MQTT), webhook (forwarding), report (offline HTML), cli.
"""
