"""Custom ops: ``upfirdn2d``, fused bias + leaky ReLU, and StyleGAN3's ``filtered_lrelu`` (native only so far).

Each op has three backends: the native PyTorch reference (the specification), C++/OpenMP CPU kernels
and CUDA kernels, the last two JIT-built on first use and cached under ``$XDG_CACHE_HOME/latentedit``.
``LATENTEDIT_OPS=auto|native|compiled`` picks one (``auto``, the default, by a fixed rule per op and
device type: see :mod:`latentedit.ops.backend`);
``latentedit ops check`` (:func:`latentedit.ops.check.check_ops`) verifies and times them.

Importing this package never compiles anything.
"""
from latentedit.ops.check import check_ops, format_table
from latentedit.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_native
from latentedit.ops.fused_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_native
from latentedit.ops.upfirdn2d import upfirdn2d, upfirdn2d_native

__all__ = ["upfirdn2d", "upfirdn2d_native", "filtered_lrelu", "filtered_lrelu_native",
           "fused_leaky_relu", "fused_leaky_relu_native", "FusedLeakyReLU",
           "check_ops", "format_table"]
