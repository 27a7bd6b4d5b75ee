"""The numbers that pace a demo run, in demo-clock seconds (the proxy's clock).

``--speed`` divides every duration and interval here; mock latencies stay real.
"""

from __future__ import annotations

WARM_UP_S = 30.0
PHASE_S = 10.0
RATE = 1.2  # calm requests per second: ~2,500 tokens/min, half token_spike's floor
HEARTBEAT_S = 60.0
# The hour ring's bucket in pulse_proxy.stats: a baseline ends on one of its boundaries.
COARSE_S = 60.0
# What resolving takes once a burst has left the window: one 10 s bucket, one evaluation.
SETTLE_S = 15.0
SLOW_MS = (2300, 2900)
WINDOW_S = 300.0  # the default rules' window
CALM_TOKENS = 35  # tokens per calm request, on average (prompt + answer)
SHARE = 0.15  # a burst makes this share of the window's requests: 3× the rules' 5 %
BURST_RATE = 5.0  # at most this many burst requests per second, on top of the calm ones
