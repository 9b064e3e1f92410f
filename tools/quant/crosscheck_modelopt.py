#!/usr/bin/env python3
"""Cross-checks tools/quant/reference.py's NVFP4 quantizer against NVIDIA ModelOpt's own
NVFP4QTensor.quantize on random tensors (bit-exact codes, scales and global scale).

    PYTHONPATH=<dir with modelopt unpacked> python3 tools/quant/crosscheck_modelopt.py

ModelOpt's package __init__ files pull in many optional dependencies (pydantic, accelerate, ...);
the NVFP4 quantize path needs only torch, so the parent packages are registered as bare namespaces
and the modules it uses are loaded alone (see load_modelopt_nvfp4). On the GPU machine:
    bash scripts/gpu-test.sh modelopt    (carry .whl/nvidia_modelopt-*.whl; downloaded by scripts/gpu-deps.sh)
"""
import ast
import importlib
import importlib.util
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(__file__))
import reference as ref  # noqa: E402


def load_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_modelopt_nvfp4():
    """ModelOpt's NVFP4QTensor with only the code its quantize path runs: the nvfp4_tensor and
    base_qtensor modules, backends/utils.py and utils/numeric_utils.py as shipped, and the three
    reduce_* helpers (plus the _FP8_DTYPES table they read) taken verbatim from utils/core_utils.py,
    whose own imports (the pydantic config system, FSDP helpers) the quantize path never touches."""
    spec = importlib.util.find_spec("modelopt")
    if spec is None:
        raise ImportError("modelopt is not on the path")
    root = os.path.dirname(spec.origin)
    quant = os.path.join(root, "torch", "quantization")
    for pkg, path in [("modelopt", root), ("modelopt.torch", os.path.join(root, "torch")),
                      ("modelopt.torch.quantization", quant),
                      ("modelopt.torch.quantization.backends", os.path.join(quant, "backends")),
                      ("modelopt.torch.quantization.qtensor", os.path.join(quant, "qtensor"))]:
        mod = types.ModuleType(pkg)
        mod.__path__ = [path]
        sys.modules[pkg] = mod
    utils = types.ModuleType("modelopt.torch.quantization.utils")
    utils.__path__ = [os.path.join(quant, "utils")]
    sys.modules[utils.__name__] = utils
    core_path = os.path.join(quant, "utils", "core_utils.py")
    with open(core_path) as f:
        core = f.read()
    wanted = {"reduce_amax", "reduce_block_amax", "reduce_block_padding", "_FP8_DTYPES"}
    nodes = [n for n in ast.parse(core).body
             if (isinstance(n, ast.FunctionDef) and n.name in wanted) or
             (isinstance(n, ast.Assign) and any(getattr(t, "id", None) in wanted for t in n.targets))]
    code = compile(ast.Module(body=nodes, type_ignores=[]), core_path, "exec")
    namespace = {"torch": torch, "F": torch.nn.functional}
    exec(code, namespace)
    missing = wanted - set(namespace)
    if missing:
        raise ImportError("core_utils.py no longer defines %s" % sorted(missing))
    for name in wanted:
        setattr(utils, name, namespace[name])
    utils.fsdp2_aware_weight_update = utils.patch_fsdp_mp_dtypes = None  # FSDP paths only
    utils.numeric_utils = load_file("modelopt.torch.quantization.utils.numeric_utils",
                                    os.path.join(quant, "utils", "numeric_utils.py"))
    load_file("modelopt.torch.quantization.backends.utils", os.path.join(quant, "backends", "utils.py"))
    load_file("modelopt.torch.quantization.qtensor.base_qtensor", os.path.join(quant, "qtensor", "base_qtensor.py"))
    return load_file("modelopt.torch.quantization.qtensor.nvfp4_tensor",
                     os.path.join(quant, "qtensor", "nvfp4_tensor.py")).NVFP4QTensor


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
