"""`python -m distribution.poller`: the network connectors' polling worker (same as `distribution-poller`)."""

from .main import run_poller

if __name__ == "__main__":
    run_poller()
