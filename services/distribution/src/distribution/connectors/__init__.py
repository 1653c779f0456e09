"""Network connectors run by this service: LinkedIn member post analytics and X public metrics, read with
the employee's consent (LinkedIn) or the tenant's app credential (X), turned into exact engagement deltas;
plus self-reported figures for networks without an API. Read-only: nothing here can post.

Pure rules: `oauth.py` (PKCE, state, authorization URLs), `linkedin.py` / `x.py` (post URLs to post ids and
the networks' response shapes; their HTTP clients), `schedule.py` (when to poll next), `deltas.py` (totals
to deltas). Types: `models.py`; ports: `ports.py`; MongoDB: `store.py`; use cases: `service.py` (the
connection flow, linking posts, self reports) and `poller.py` (the polling worker); HTTP: `api.py`.
"""
