//! Key upload frame by frame: a complete upload gives working keys; every malformed sequence is
//! refused with the reason.

use client_core::cipher::{decrypt_slots, encrypt_symmetric};
use client_core::encoding::Encoder;
use client_core::keys::{
    galois_element_for_rotation, KeyChunk, KeyKind, PublicKey, SecretKey, SwitchingKeyGenerator,
};
use client_core::params::{Params, COMPACT_N8192};
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::{Csprng, Seed};
use client_core::wire::messages::Limb;
use server::eval::{Ct, Evaluator};
use server::net::{KeyUpload, KeyUploadError};

struct Client {
    ctx: Context,
    sk: SecretKey,
    pk: PublicKey,
    rng: Csprng,
}

fn client() -> Client {
    let params = Params::from_spec(&COMPACT_N8192).unwrap();
    let ctx = Context::new(&params).unwrap();
    let mut rng = Csprng::from_seed([5; 32]);
    let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
    let pk = PublicKey::generate(&ctx, &sk, &mut rng).unwrap();
    Client { ctx, sk, pk, rng }
}

fn public_limbs(c: &Client) -> Vec<Limb> {
    let n = c.ctx.n();
    c.pk.b()
        .data()
        .chunks(n)
        .enumerate()
        .map(|(i, w)| Limb {
            index: i as u16,
            words: w.to_vec(),
        })
        .collect()
}

fn key_chunks(c: &mut Client, kind: KeyKind) -> (Seed, Vec<KeyChunk>) {
    let g = SwitchingKeyGenerator::new(&c.ctx, &c.sk, kind, &mut c.rng).unwrap();
    let chunks = g.chunks().collect::<Result<Vec<_>, _>>().unwrap();
    (g.seed(), chunks)
}

fn fresh(c: &Client) -> KeyUpload<'_> {
    KeyUpload::new(&c.ctx, vec![KeyKind::Relinearization])
}

fn send_public(up: &mut KeyUpload<'_>, c: &Client) {
    for limb in public_limbs(c) {
        up.public_limb(*c.pk.seed(), &limb).unwrap();
    }
}

#[test]
fn a_complete_upload_gives_working_keys() {
    let mut c = client();
    let rot = KeyKind::Galois(galois_element_for_rotation(c.ctx.n(), 3));
    let requested = vec![KeyKind::Relinearization, rot];
    let relin = key_chunks(&mut c, KeyKind::Relinearization);
    let galois = key_chunks(&mut c, rot);
    let mut up = KeyUpload::new(&c.ctx, requested);
    send_public(&mut up, &c);
    // Keys in another order than requested are fine.
    for (kind, (seed, chunks)) in [(rot, galois), (KeyKind::Relinearization, relin)] {
        up.key_begin(kind, seed).unwrap();
        for chunk in chunks {
            up.chunk(chunk).unwrap();
        }
    }
    let keys = up.finish(&c.pk.key_id(&c.ctx)).unwrap();

    // The uploaded Galois key rotates.
    let ctx = std::sync::Arc::new(Context::new(c.ctx.params()).unwrap());
    let eval = Evaluator::new(ctx.clone()).unwrap();
    let encoder = Encoder::new(ctx.params().log_n());
    let values: Vec<f64> = (0..ctx.params().slots()).map(|i| (i % 7) as f64).collect();
    let pt = encoder
        .encode(
            &ctx,
            &values,
            ctx.params().default_scale(),
            ctx.params().top_level(),
        )
        .unwrap();
    let ct = encrypt_symmetric(&ctx, &c.sk, &pt, &mut c.rng)
        .unwrap()
        .expand(&ctx)
        .unwrap();
    let rotated = eval
        .rotate(&Ct::from_fresh(&ctx, ct).unwrap(), 3, &keys)
        .unwrap();
    let out = decrypt_slots(&ctx, &encoder, &c.sk, &rotated.into_ciphertext()).unwrap();
    for (i, v) in out.iter().take(64).enumerate() {
        assert!(
            (v - values[(i + 3) % values.len()]).abs() < 1e-3,
            "slot {i}"
        );
    }
}

#[test]
fn malformed_uploads_are_refused() {
    let mut c = client();
    let relin = key_chunks(&mut c, KeyKind::Relinearization);
    let key_id = c.pk.key_id(&c.ctx);

    // A switching key before the public key.
    let mut up = fresh(&c);
    assert!(matches!(
        up.key_begin(KeyKind::Relinearization, relin.0),
        Err(KeyUploadError::Order(_))
    ));

    // Public key limbs out of order, and a limb of the wrong length.
    let limbs = public_limbs(&c);
    let mut up = fresh(&c);
    assert!(up.public_limb(*c.pk.seed(), &limbs[1]).is_err());
    let short = Limb {
        index: 0,
        words: vec![1; 3],
    };
    assert!(matches!(
        fresh(&c).public_limb(*c.pk.seed(), &short),
        Err(KeyUploadError::Material(_))
    ));

    // Residues not below their prime.
    let mut up = fresh(&c);
    let mut bad = limbs[0].clone();
    bad.words[7] = u64::MAX;
    let mut result = up.public_limb(*c.pk.seed(), &bad);
    for limb in &limbs[1..] {
        if result.is_err() {
            break;
        }
        result = up.public_limb(*c.pk.seed(), limb);
    }
    assert!(
        matches!(result, Err(KeyUploadError::Material(_))),
        "{result:?}"
    );

    // A key nobody asked for.
    let mut up = fresh(&c);
    send_public(&mut up, &c);
    let g = KeyKind::Galois(galois_element_for_rotation(c.ctx.n(), 1));
    assert_eq!(
        up.key_begin(g, [0; 32]),
        Err(KeyUploadError::Unrequested(g))
    );

    // Missing, duplicated and out-of-order chunks.
    for tamper in ["skip", "duplicate", "swap"] {
        let mut up = fresh(&c);
        send_public(&mut up, &c);
        up.key_begin(KeyKind::Relinearization, relin.0).unwrap();
        let mut chunks = relin.1.clone();
        match tamper {
            "skip" => {
                chunks.remove(2);
            }
            "duplicate" => chunks.insert(2, chunks[1].clone()),
            _ => chunks.swap(1, 2),
        }
        let result = chunks.into_iter().try_for_each(|ch| up.chunk(ch));
        assert!(matches!(result, Err(KeyUploadError::Order(_))), "{tamper}");
    }

    // The same key twice.
    let mut up = fresh(&c);
    send_public(&mut up, &c);
    up.key_begin(KeyKind::Relinearization, relin.0).unwrap();
    for ch in relin.1.clone() {
        up.chunk(ch).unwrap();
    }
    assert!(matches!(
        up.key_begin(KeyKind::Relinearization, relin.0),
        Err(KeyUploadError::Unrequested(_))
    ));

    // Finishing early, and with another key id.
    let mut up = fresh(&c);
    send_public(&mut up, &c);
    assert!(matches!(
        up.finish(&key_id),
        Err(KeyUploadError::Missing(1))
    ));
    let mut up = fresh(&c);
    send_public(&mut up, &c);
    up.key_begin(KeyKind::Relinearization, relin.0).unwrap();
    for ch in relin.1.clone() {
        up.chunk(ch).unwrap();
    }
    let mut other = key_id;
    other[0] ^= 1;
    assert!(matches!(up.finish(&other), Err(KeyUploadError::KeyId)));
}
