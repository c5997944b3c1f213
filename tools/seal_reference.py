#!/usr/bin/env python3
"""Microsoft SEAL CKKS reference timings, for comparison with `cargo bench -p client-core`.

Uses the low-level SEAL 4.x bindings that ship with TenSEAL (`tenseal.sealapi`). SEAL itself is
single-threaded; run this script pinned to one core for stable numbers:

    pip install tenseal
    taskset -c 0 python3 tools/seal_reference.py [--runs 50]
    OMP_NUM_THREADS=1 taskset -c 1 python3 tools/seal_reference.py --evaluator [--runs 50]

`--evaluator` times evaluator operations instead (see EVAL_CONFIGS and bench_evaluator), at the
parameters of the `seal-params` groups of `cargo bench -p server` (docs/benchmarks-server.md).

Every figure is the median of `--runs` timed calls (after a few warm-up calls), in milliseconds.

What each SEAL call does, compared with client-core (see docs/benchmarks-client-core.md):

* `encode` produces an NTT-form plaintext (it includes one forward NTT per prime); client-core's
  `Encoder::encode` stops at coefficient form and its encryption does the NTT.
* `decrypt` stays in NTT form (c0 + c1*s, no inverse NTT); the inverse NTT and the CRT
  composition happen inside `decode`. client-core's `cipher::decrypt` includes the inverse NTT.
  Compare decrypt+decode with `cipher::decrypt_slots`.
* `encrypt (pk)` in SEAL encrypts at one level above the target (it includes the special prime at
  the top level) and then divides by the extra prime.
* `encrypt (sym)` is SEAL's full (non-seeded) symmetric ciphertext; the seeded `Serializable`
  overload is not usable from Python (its return type is not bound).
* `keygen secret` is the `KeyGenerator` constructor (samples s and its NTT form).
* The Galois key is one key, for rotation by one slot (Galois element 3 in SEAL's convention).
* Python-side overhead: `encode` takes a Python list of N/2 floats, which pybind11 converts to a
  C++ vector on every call; `decode` converts the result back to a list. The script measures the
  argument conversion alone (an `encode` call with an invalid parms_id, which SEAL rejects before
  doing any work) and reports it so it can be subtracted.
"""

import argparse
import statistics
import sys
import tempfile
import time

try:
    import tenseal.sealapi as seal
except ImportError:  # pragma: no cover - environment dependent
    sys.exit("tenseal is not installed: pip install tenseal")

# (label, N, coefficient-modulus bit sizes (last = SEAL's single special prime),
#  levels at which decryption/decoding are timed, scale bits)
CONFIGS = [
    ("N=8192 [60,40,60] (issue's comparison)", 8192, [60, 40, 60], {"handoff": 1}, 40),
    (
        "N=16384 [50,50,50,45,45,45 | 60] (~default-n16384)",
        16384,
        [50, 50, 50, 45, 45, 45, 60],
        {"handoff": 2},
        45,
    ),
    (
        "N=8192 [50,40,38,38 | 50] (= compact-n8192 q and p sizes)",
        8192,
        [50, 40, 38, 38, 50],
        {"handoff": 1},
        38,
    ),
]


# Evaluator section (--evaluator): (label, N, coefficient-modulus bit sizes (last = special prime),
# scale bits). The server benchmark's `seal-params` groups use the same bit sizes.
EVAL_CONFIGS = [
    ("N=8192 [60,40,40 | 60]", 8192, [60, 40, 40, 60], 40),
    ("N=16384 [60,40,40,40,40 | 60]", 16384, [60, 40, 40, 40, 40, 60], 40),
]


def median_ms(fn, runs, warmup=3, setup=None):
    """Median wall time of fn(arg) in ms; `setup` (untimed) builds arg for each run."""
    for _ in range(warmup):
        fn(setup() if setup else None)
    samples = []
    for _ in range(runs):
        arg = setup() if setup else None
        t0 = time.perf_counter_ns()
        fn(arg)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


def parms_id_at_level(ctx, level):
    """parms_id of the ciphertext level whose chain index is `level` (0 = one prime)."""
    data = ctx.first_context_data()
    while data.chain_index() > level:
        data = data.next_context_data()
    if data.chain_index() != level:
        raise ValueError(f"no level {level}")
    return data.parms_id()


def seal_version(ctx, kg):
    """SEAL version from a serialised object's header (bytes 3 and 4)."""
    pk = seal.PublicKey()
    kg.create_public_key(pk)
    with tempfile.NamedTemporaryFile() as f:
        pk.save(f.name)
        header = open(f.name, "rb").read(16)
    return f"{header[3]}.{header[4]}"


def bench_config(label, n, bits, levels, scale_bits, runs):
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, bits))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise RuntimeError(f"{label}: {ctx.parameters_error_message()}")
    top = ctx.first_context_data().chain_index()
    scale = 2.0**scale_bits
    slots = n // 2
    values = [((i * 0.61803398875) % 1.0) * 2.0 - 1.0 for i in range(slots)]

    kg = seal.KeyGenerator(ctx)
    sk = kg.secret_key()
    pk = seal.PublicKey()
    kg.create_public_key(pk)
    encoder = seal.CKKSEncoder(ctx)
    enc_pk = seal.Encryptor(ctx, pk)
    enc_sk = seal.Encryptor(ctx, sk)
    dec = seal.Decryptor(ctx, sk)
    ev = seal.Evaluator(ctx)

    rows = []

    def row(name, ms, note=""):
        rows.append((name, ms, note))

    # Key generation.
    row("keygen secret", median_ms(lambda _: seal.KeyGenerator(ctx), runs))

    def make_pk(_):
        out = seal.PublicKey()
        kg.create_public_key(out)

    row("keygen public", median_ms(make_pk, runs))

    def make_rk(_):
        out = seal.RelinKeys()
        kg.create_relin_keys(out)

    row("keygen relin", median_ms(make_rk, runs))

    gk = seal.GaloisKeys()
    kg.create_galois_keys([3], gk)  # a list of ints binds to the Galois-element overload
    assert gk.has_key(3) and gk.size() == 1, "expected one Galois key for element 3"

    def make_gk(_):
        out = seal.GaloisKeys()
        kg.create_galois_keys([3], out)

    row("keygen galois (1 rotation)", median_ms(make_gk, runs))

    # Encoding.
    def encode_top(_):
        encoder.encode(values, scale, seal.Plaintext())

    row(f"encode N/2 values (level {top})", median_ms(encode_top, runs), "NTT form")

    bad_id = [0, 0, 0, 0]

    def convert_only(_):
        try:
            encoder.encode(values, bad_id, scale, seal.Plaintext())
        except (ValueError, RuntimeError):
            pass

    row("  of which pybind11 list->vector", median_ms(convert_only, runs), "Python overhead")

    pt = seal.Plaintext()
    encoder.encode(values, scale, pt)

    # Encryption.
    def encrypt_pk(_):
        enc_pk.encrypt(pt, seal.Ciphertext())

    row(f"encrypt pk (level {top})", median_ms(encrypt_pk, runs))

    def encrypt_sym(_):
        enc_sk.encrypt_symmetric(pt, seal.Ciphertext())

    row(f"encrypt sym (level {top})", median_ms(encrypt_sym, runs), "full, not seeded")

    ct_top = seal.Ciphertext()
    enc_pk.encrypt(pt, ct_top)

    # Decryption / decoding at several levels.
    level_set = {"top": top, **levels, "zero": 0}
    seen = set()
    for name, level in level_set.items():
        if level in seen:
            continue
        seen.add(level)
        ct = seal.Ciphertext()
        enc_pk.encrypt(pt, ct)
        if level != top:
            ev.mod_switch_to_inplace(ct, parms_id_at_level(ctx, level))

        def decrypt(_, ct=ct):
            dec.decrypt(ct, seal.Plaintext())

        row(f"decrypt (level {level}, {name})", median_ms(decrypt, runs), "NTT form, no INTT")
        ptl = seal.Plaintext()
        dec.decrypt(ct, ptl)

        def decode(_, ptl=ptl):
            encoder.decode_double(ptl)

        row(f"decode (level {level}, {name})", median_ms(decode, runs), "INTT+CRT+FFT, list out")

        def decrypt_decode(_, ct=ct):
            p = seal.Plaintext()
            dec.decrypt(ct, p)
            encoder.decode_double(p)

        row(f"decrypt+decode (level {level}, {name})", median_ms(decrypt_decode, runs))

    # Correctness check of the timed pipeline.
    out = seal.Plaintext()
    dec.decrypt(ct_top, out)
    got = encoder.decode_double(out)
    err = max(abs(a - b) for a, b in zip(values, got))
    assert err < 1e-3, f"{label}: round-trip error {err}"
    return rows, seal_version(ctx, kg), top


def bench_evaluator(label, n, bits, scale_bits, runs):
    """Evaluator operations on top-level ciphertexts, each into a preallocated destination.

    * `multiply_plain`: ciphertext times an NTT-form plaintext encoded at the same scale.
    * `multiply + relinearize + rescale_to_next`: the three calls in sequence.
    * `rotate_vector` by one slot (one Galois key, element 3).
    * `rescale_to_next` of a fresh ciphertext (the same work as after a product).
    """
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, bits))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise RuntimeError(f"{label}: {ctx.parameters_error_message()}")
    top = ctx.first_context_data().chain_index()
    scale = 2.0**scale_bits
    slots = n // 2
    xs = [((i * 0.61803398875) % 1.0) * 2.0 - 1.0 for i in range(slots)]
    ys = [((i * 0.41421356237) % 1.0) * 2.0 - 1.0 for i in range(slots)]

    kg = seal.KeyGenerator(ctx)
    sk = kg.secret_key()
    pk = seal.PublicKey()
    kg.create_public_key(pk)
    rk = seal.RelinKeys()
    kg.create_relin_keys(rk)
    gk = seal.GaloisKeys()
    kg.create_galois_keys([3], gk)  # Galois element of a rotation by one slot
    assert gk.has_key(3) and gk.size() == 1, "expected one Galois key for element 3"
    encoder = seal.CKKSEncoder(ctx)
    enc = seal.Encryptor(ctx, pk)
    dec = seal.Decryptor(ctx, sk)
    ev = seal.Evaluator(ctx)

    def encrypt(vals):
        p = seal.Plaintext()
        encoder.encode(vals, scale, p)
        c = seal.Ciphertext()
        enc.encrypt(p, c)
        return c

    x = encrypt(xs)
    y = encrypt(ys)
    w = seal.Plaintext()
    encoder.encode(ys, scale, w)
    out = seal.Ciphertext()

    rows = []

    def row(name, fn, check=None):
        ms = median_ms(fn, runs)
        err = None
        if check is not None:
            p = seal.Plaintext()
            dec.decrypt(out, p)
            got = encoder.decode_double(p)
            err = max(abs(a - b) for a, b in zip(check, got))
            assert err < 1e-3, f"{label}: {name}: error {err}"
        rows.append((name, ms, "" if err is None else f"max error {err:.1e}"))

    row("Python call overhead (ct.size())", lambda _: x.size())
    prod = [a * b for a, b in zip(xs, ys)]
    row("multiply_plain", lambda _: ev.multiply_plain(x, w, out), prod)

    def mul_relin_rescale(_):
        ev.multiply(x, y, out)
        ev.relinearize_inplace(out, rk)
        ev.rescale_to_next_inplace(out)

    row("multiply + relinearize + rescale_to_next", mul_relin_rescale, prod)
    row("rotate_vector (1 step)", lambda _: ev.rotate_vector(x, 1, gk, out), xs[1:] + xs[:1])
    row("rescale_to_next", lambda _: ev.rescale_to_next(x, out))
    return rows, seal_version(ctx, kg), top


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument(
        "--evaluator",
        action="store_true",
        help="time evaluator operations at SEAL's parameters instead (EVAL_CONFIGS)",
    )
    args = ap.parse_args()
    if args.evaluator:
        for label, n, bits, scale_bits in EVAL_CONFIGS:
            rows, version, top = bench_evaluator(label, n, bits, scale_bits, args.runs)
            print(f"\n### SEAL {version} evaluator, {label}, scale 2^{scale_bits}, top level {top}")
            print()
            print(f"median of {args.runs} runs, inputs at level {top}\n")
            print("| operation | ms | note |")
            print("|---|---:|---|")
            for name, ms, note in rows:
                print(f"| {name} | {ms:.4f} | {note} |")
        return
    for label, n, bits, levels, scale_bits in CONFIGS:
        rows, version, top = bench_config(label, n, bits, levels, scale_bits, args.runs)
        print(f"\n### SEAL {version}, {label}, scale 2^{scale_bits}, top level {top}\n")
        print(f"median of {args.runs} runs\n")
        print("| operation | ms | note |")
        print("|---|---:|---|")
        for name, ms, note in rows:
            print(f"| {name} | {ms:.3f} | {note} |")


if __name__ == "__main__":
    main()
