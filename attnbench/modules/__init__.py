"""The attention zoo: one file per family, each class registered with its paper and parameter formula."""

from attnbench.modules.base import (
    ATTENTION,
    BASELINE,
    NATIVE,
    AttentionSpec,
    Paper,
    attention,
    get_attention,
)

# Importing the family files fills the registry.
from attnbench.modules import (  # noqa: E402,F401
    bam,
    bilinear,
    cbam,
    coord,
    dia,
    eca,
    encnet,
    fca,
    gct,
    gsop,
    rcan,
    scse,
    se,
    sk,
    soca,
    srm,
)

__all__ = ["ATTENTION", "BASELINE", "NATIVE", "AttentionSpec", "Paper", "attention", "get_attention"]
