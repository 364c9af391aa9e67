"""Everything about calling a client back: which URLs may be called (``egress``: the policy and the
pinned HTTP client), one signed POST and what came of it (``attempt``), the series of attempts
until the event is acknowledged or given up (``series``), and the webhook secrets sealed at rest
(``sealing``)."""
