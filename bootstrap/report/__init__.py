"""Run reports: what a restore or drill did, how long it took, and whether it met its RTO.

``model.build`` turns the journal's rows into one plain ``dict`` (the JSON report);
``markdown``, ``junit`` and ``html`` (with ``timeline``'s picture embedded) render that
dict; ``write`` puts the chosen formats on disk atomically. Reports hold references and
timings only, never secret material.
"""
