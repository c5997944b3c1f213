#!/usr/bin/env python3
"""Back-of-the-envelope budgets of candidate light-client designs (issue 16, docs/light-client.md).

Prints, per design: the modulus each budget needs, log2(QP) against the 128-bit bound, limbs,
key-upload bytes and bytes per MNIST-small inference. The formulas follow the server's planner
(server/src/protocol/planner.rs) and are estimates until that planner covers the new round; the
measured row (A) checks them against the README's figures.

Usage: python3 tools/light_budget.py
"""

import math

S = 40  # statistical security of masks and flooding (bits)
Y = 3.0  # log2 of the calibrated pre-activation bound (|y| <= 8)
SPREAD = 4  # |r| uniform in [1, 2^SPREAD]
SIGN_BITS = 15.5  # signs reliable down to |y| = Y * 2^-SIGN_BITS (today's planner margin)
NOISE = 12.0  # log2 of a transform's output noise over its plaintext scale (coefficients)
BOUND = {13: 218, 14: 438, 15: 881}  # HE-standard log2(QP) bounds, ternary secrets
ROUNDS = 2  # MNIST small


def sign_magnitude_scale(log_n, prec=SIGN_BITS):
    """log2 of the client's encoding scale so that flooding leaves `prec` sign bits.

    The ReLU message carries noise E = Delta_c-independent NOISE + log Delta_w bits; flooding adds
    F = n + E + s bits; its slot noise over the message scale Delta_c * Delta_w must stay below
    Y * 2^-prec, so Delta_w cancels out.
    """
    return 1.5 * log_n + NOISE + S - math.log2(3) / 2 - Y + prec


def design(name, log_n, q, p, alpha, rot_keys, relin, up_limbs, down_limbs, note, need_q=None):
    n = 1 << log_n
    log_q, log_p = sum(q), sum(p)
    digits = math.ceil(len(q) / alpha)
    key_limbs = digits * (len(q) + len(p))
    keys = rot_keys + (1 if relin else 0)
    words = len(q) + keys * key_limbs  # public key + switching keys (b only: a is seeded)
    key_bytes = words * n * 8
    packed = sum(q) * n / 8 + keys * digits * (log_q + log_p) * n / 8
    bound = BOUND[log_n]
    print(f"## {name}: {note}")
    print(f"  N = 2^{log_n}; Q = {q} ({log_q} bits), P = {p} ({log_p}); log QP = {log_q + log_p} / {bound}"
          f" ({'ok' if log_q + log_p <= bound else 'OVER'})")
    if need_q is not None:
        print(f"  the round needs Q >= 2^{need_q:.0f} at the top ({'ok' if log_q >= need_q else 'SHORT'})")
    print(f"  keys: {keys} switching keys x {digits} digits x {len(q) + len(p)} limbs + public key:"
          f" {key_bytes / 1e6:.1f} MB in 64-bit words, {packed / 1e6:.1f} MB bit-packed")
    print(f"  per inference: {up_limbs} limbs up, {down_limbs} limbs down:"
          f" {(up_limbs + down_limbs) * n * 8 / 1e6:.2f} MB (64-bit words)")
    print()


def main():
    # A: today (hefun-n16384), measured: 137.8 MB keys, 4.19 + 3.93 MB per inference.
    design("A (today)", 14, [50, 50, 50, 44, 44, 44, 44], [50, 50], 2, 28, True,
           4 + ROUNDS * (7 + 7), ROUNDS * 2 * 2 * 3 + 2 * 3,
           "ReLU product (88 bits) + transform (44) above a 150-bit hand-off; two messages each way")

    # B: the client rescales the refresh polynomial by the weight scale: the transform needs no
    # prime, the ReLU product still two.
    design("B (client rescale)", 14, [50, 50, 50, 44, 44], [50, 50], 2, 28, True,
           3 + ROUNDS * (5 + 5), ROUNDS * 2 * 2 * 3 + 2 * 3,
           "ReLU product (88 bits) above the hand-off; two messages each way")

    # C: no ct x ct, no server rescale, refresh kept: the mask must hide Delta_c*Delta_w*Y.
    c = sign_magnitude_scale(13)
    w = 20
    mask = 13 + c + w + Y + S + 1
    design("C (|y r| back, refresh kept)", 13, [41, 41, 41, 41], [50], 1, 28, False,
           4 + ROUNDS * (4 + 4), ROUNDS * 2 * 2 * 4 + 2 * 4,
           f"refresh mask 2^{mask:.0f} for Delta_c = 2^{c:.0f}, Delta_w = 2^{w}", need_q=mask + 2)

    # D: one message each way per round (sign-magnitude round): the client returns (v, |v|) for
    # the flooded ReLU message v = rho*y*r + eps; no refresh mask, no ct x ct, no rescale.
    need = c + w + Y + SPREAD + 2
    for label, q, p, alpha in [
        ("D1 (3 x 40-bit primes)", [40, 40, 40], [40, 40], 2),
        ("D2 (2 x 60-bit primes)", [60, 60], [60], 1),
        ("D3 (4 x 30-bit primes, 32-bit device arithmetic)", [30, 30, 30, 30], [30, 30], 2),
    ]:
        for keys in (28, 12):
            design(f"{label}, {keys} rotation keys", 13, q, p, alpha, keys, False,
                   len(q) * (1 + ROUNDS), ROUNDS * 2 * len(q) + 2 * len(q),
                   f"message 2^{need - 2:.0f} (Delta_c = 2^{c:.0f}, Delta_w = 2^{w}, r <= 2^{SPREAD})",
                   need_q=need)


if __name__ == "__main__":
    main()
