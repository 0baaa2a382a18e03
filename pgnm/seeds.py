"""One way to derive a seed from several integers (a run's seed, an epoch, a rank, ...).

NumPy's ``SeedSequence`` mixes the parts into well-spread 32-bit words, so nearby inputs such
as (seed, epoch) and (seed, epoch + 1) give unrelated streams, with no hand-picked primes.
"""

from __future__ import annotations

import numpy as np


def derive(*parts: int) -> int:
    """A 63-bit seed that depends on every part and their order."""
    words = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(2)
    return int((int(words[0]) << 31) ^ int(words[1]))
