#!/usr/bin/env python3
"""Cross-checks tools/quant/reference.py's NVFP4 quantizer against NVIDIA ModelOpt's own
NVFP4QTensor.quantize on random tensors (bit-exact codes, scales and global scale).

    PYTHONPATH=<dir with modelopt unpacked> python3 tools/quant/crosscheck_modelopt.py

ModelOpt's package __init__ pulls in many optional dependencies; the qtensor module itself needs
only torch, so the parent packages are registered as bare namespaces and the module loaded alone.
"""
import importlib
import importlib.util
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(__file__))
import reference as ref  # noqa: E402


def load_modelopt_nvfp4():
    spec = importlib.util.find_spec("modelopt")
    if spec is None:
        raise ImportError("modelopt is not on the path")
    root = os.path.dirname(spec.origin)
    for pkg in ["modelopt", "modelopt.torch", "modelopt.torch.quantization"]:
        mod = types.ModuleType(pkg)
        mod.__path__ = [os.path.join(root, *pkg.split(".")[1:])]
        sys.modules[pkg] = mod
    return importlib.import_module("modelopt.torch.quantization.qtensor.nvfp4_tensor").NVFP4QTensor


def main():
    try:
        NVFP4QTensor = load_modelopt_nvfp4()
    except Exception as e:  # report, do not pretend
        print(f"SKIPPED: ModelOpt's NVFP4 module could not be loaded: {type(e).__name__}: {e}")
        return 0
    gen = torch.Generator().manual_seed(0)
    failures = 0
    for trial in range(20):
        n, k = 16 * (1 + trial % 5), 16 * (1 + trial % 7)
        w = torch.randn(n, k, generator=gen) * (10 ** (trial % 5 - 2))
        if trial % 4 == 0:
            w[:, :16] = 0  # zero blocks get scale 1.0
        if trial % 3 == 0:  # exact E2M1 tie points
            w.view(-1)[: 7] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]) * w.abs().max() / 6
        qt, scale, ws2 = NVFP4QTensor.quantize(w.clone(), 16)
        packed, rscale, rws2 = ref.nvfp4_quantize(w.clone())
        same = (torch.equal(qt._quantized_data, packed) and torch.equal(scale.view(torch.uint8), rscale.view(torch.uint8))
                and torch.equal(ws2.float().reshape(()), rws2))
        failures += not same
        print(f"trial {trial} [{n}x{k}]: {'identical' if same else 'DIFFERENT'}")
    print(f"{20 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
