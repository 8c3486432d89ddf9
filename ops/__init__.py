"""Custom ops: ``upfirdn2d`` and fused bias + leaky ReLU, each with a native reference path.

Importing this package never compiles anything; compiled kernels are built lazily on first use.
"""
from latentedit.ops.fused_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_native
from latentedit.ops.upfirdn2d import upfirdn2d, upfirdn2d_native

__all__ = ["upfirdn2d", "upfirdn2d_native", "fused_leaky_relu", "fused_leaky_relu_native", "FusedLeakyReLU"]
