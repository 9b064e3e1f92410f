"""Reference quantizers and dequantizers for the checkpoint formats glint reads (spec/FORMATS.md).

Written from the published formulas, not copied:
  NVFP4 (ModelOpt): weight_scale_2 = amax(W) / (6 * 448); per 16-element block
      scale = amax_block / (6 * weight_scale_2), 0 -> 1.0, clamped to [2^-9, 448], cast to FP8 E4M3;
      codes = E2M1(W / (float(scale) * weight_scale_2)), round to nearest even, saturating at 6;
      element 2j in the low nibble of byte j.
  compressed-tensors NVFP4: the same codes and block scales; weight_global_scale = 1 / weight_scale_2.
  FP8 block (DeepSeek / zai-org): weight_scale_inv[block] = amax_block / 448; W8 = FP8(W / scale_inv).
  GPTQ int4 (sym, v1 zero offset): round-to-nearest with scale = amax_group / 7.5, codes q in 0..15,
      qzeros stores 7 (effective zero 8); w = scale * (q - (zero + 1)).
Every function works on float32 torch tensors [N, K] (out, in).
"""
import torch

E2M1_BOUNDS = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
E2M1_VALUES = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)
FP8_MAX = 448.0
E2M1_MAX = 6.0


def nvfp4_global_scale(*weights):
    """weight_scale_2 shared by the given tensors (gate and up of one MLP share it)."""
    amax = max(w.abs().max().float() for w in weights)
    return (amax / (E2M1_MAX * FP8_MAX)).float().reshape(())


def e2m1_codes(x):
    """Round to nearest E2M1 code, ties to even, saturating (ModelOpt's rule)."""
    sign = (x < 0).to(torch.uint8)
    mag = x.abs()
    idx = torch.searchsorted(E2M1_BOUNDS.to(x.device), mag).to(torch.uint8)  # bounds strictly below
    odd_tie = (mag.unsqueeze(-1) == E2M1_BOUNDS.to(x.device)[[1, 3, 5]]).any(-1).to(torch.uint8)
    return (sign << 3) + idx + odd_tie


def nvfp4_quantize(w, ws2=None):
    w = w.float()
    n, k = w.shape
    assert k % 16 == 0, "K must be a multiple of 16"
    if ws2 is None:
        ws2 = nvfp4_global_scale(w)
    blocks = w.view(n, k // 16, 16)
    block_amax = blocks.abs().amax(-1)
    scale = block_amax / (E2M1_MAX * ws2)
    scale[scale == 0] = 1.0
    scale_fp8 = scale.clamp(min=2 ** -9, max=FP8_MAX).to(torch.float8_e4m3fn)
    scaled = blocks / (scale_fp8.float() * ws2).unsqueeze(-1)
    codes = e2m1_codes(scaled.view(n, k))
    packed = (codes[:, 1::2] << 4) | codes[:, 0::2]
    return packed.contiguous(), scale_fp8.contiguous(), ws2


def nvfp4_dequantize(packed, scale_fp8, ws2):
    n = packed.shape[0]
    codes = torch.stack([packed & 15, packed >> 4], dim=-1).view(n, -1).long()
    values = E2M1_VALUES.to(packed.device)[codes]
    return (values.view(n, -1, 16) * (scale_fp8.float() * ws2).unsqueeze(-1)).view(n, -1)


def fp8_block_quantize(w, block=128):
    w = w.float()
    n, k = w.shape
    bn, bk = -(-n // block), -(-k // block)
    padded = torch.zeros(bn * block, bk * block)
    padded[:n, :k] = w
    amax = padded.view(bn, block, bk, block).abs().amax(dim=(1, 3))
    scale_inv = (amax / FP8_MAX).clamp(min=1e-12)
    expanded = scale_inv.repeat_interleave(block, 0).repeat_interleave(block, 1)[:n, :k]
    q = (w / expanded).to(torch.float8_e4m3fn)
    return q.contiguous(), scale_inv.float().contiguous()


def fp8_block_dequantize(q, scale_inv, block=128):
    n, k = q.shape
    expanded = scale_inv.repeat_interleave(block, 0).repeat_interleave(block, 1)[:n, :k]
    return q.float() * expanded


def gptq_quantize(w, group=128):
    """Round-to-nearest symmetric int4 in the GPTQ v1 layout (what AutoRound/GPTQ export)."""
    w = w.float()
    n, k = w.shape
    assert k % 8 == 0 and n % 8 == 0 and k % group == 0
    groups = k // group
    wg = w.view(n, groups, group)
    scale = (wg.abs().amax(-1) / 7.5).clamp(min=1e-8).half()  # [N, G]
    q = torch.clamp(torch.round(wg / scale.float().unsqueeze(-1)) + 8, 0, 15).to(torch.int64).view(n, k)
    qweight = torch.zeros(k // 8, n, dtype=torch.int64)
    for j in range(8):
        qweight |= q.t()[j::8, :] << (4 * j)
    zeros = torch.full((groups, n), 7, dtype=torch.int64)  # v1 stores zero - 1
    qzeros = torch.zeros(groups, n // 8, dtype=torch.int64)
    for j in range(8):
        qzeros |= zeros[:, j::8] << (4 * j)
    g_idx = torch.arange(k, dtype=torch.int32) // group
    # int64 -> int32 keeps the low 32 bits (two's complement), as the packed format wants
    return qweight.to(torch.int32), qzeros.to(torch.int32), scale.t().contiguous(), g_idx


def gptq_dequantize(qweight, qzeros, scales, group=128):
    kq, n = qweight.shape
    k = kq * 8
    qw = qweight.to(torch.int64) & 0xFFFFFFFF
    q = torch.stack([(qw >> (4 * j)) & 15 for j in range(8)], dim=1).reshape(k, n)
    qz = qzeros.to(torch.int64) & 0xFFFFFFFF
    z = torch.stack([(qz >> (4 * j)) & 15 for j in range(8)], dim=2).reshape(qz.shape[0], n)
    g = torch.arange(k) // group
    return (scales.float()[g] * (q - (z[g] + 1)).float()).t().contiguous()
