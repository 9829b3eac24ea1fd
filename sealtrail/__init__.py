"""The `sealtrail` command, the demo, and the few small pieces both sides share.

Layering: ``errors``, ``ratelog`` and ``mqtt`` import nothing of the project (the floor that
``edge_agent``, ``customs``, ``ledger_client`` and ``firmware_sim`` may stand on); ``cli`` and
``demo`` sit on top and load the sides they mount only when a command runs.
"""
