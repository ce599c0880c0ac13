"""Policies: models behind one `Policy` interface, the shared trainer, the policy server, evaluation.

Importing `policies` registers the built-in policies (see `policies.base.available_policies`).
"""

from policies import carp as _carp  # noqa: E402,F401  (registers "carp")
from policies import diffusion as _diffusion  # noqa: E402,F401  (registers "dp")
from policies import rdp as _rdp  # noqa: E402,F401  (registers "rdp")
from policies.base import (
    CheckpointError,
    FeatureSpec,
    Policy,
    PolicyConfig,
    PolicyError,
    available_policies,
    load_policy,
    policy_class,
    register_policy,
)

__all__ = [
    "CheckpointError", "FeatureSpec", "Policy", "PolicyConfig", "PolicyError", "available_policies", "load_policy",
    "policy_class", "register_policy",
]
