"""The operator's load tool for the e-licence verification gateway.

``python -m load run``     open-loop run of one scenario at a target rate (no coordinated omission)
``python -m load max``     closed-loop search for the maximum throughput
``python -m load peer``    the naive peer: a minimal aiohttp app doing only ``jwt.decode`` (ES256)
``python -m load compare`` closed-loop max against the peer and a gateway in one run, with the ratio

See load/README.md. Latency is measured from each request's *intended* send time, held in
HDR histograms (the ``hdrhistogram`` package), and written as result JSON plus a
self-contained HTML report.
"""

__all__ = ["__version__"]
__version__ = "1.0.0"
