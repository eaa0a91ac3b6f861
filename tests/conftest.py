"""Test-wide settings."""

import torch

# The models in tests are tiny: their ops are dominated by dispatch overhead, where a second
# intra-op thread only adds synchronisation (and stalls badly when the other core is busy).
torch.set_num_threads(1)
