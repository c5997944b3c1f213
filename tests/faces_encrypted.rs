//! The faces networks through the whole protocol in process: the first layer spans several
//! ciphertexts (im2col input in 3, convolution output in 2, permuted by the Clos stages), and
//! the encrypted prediction must equal tract's on images of different people. The first round's
//! ReLU message must hold every neuron at its permuted position, and the permutation must change
//! between inferences.

use std::path::Path;
use std::sync::Arc;

use client_core::cipher::decrypt_int;
use client_core::client::{InProcessClient, ServerInfo};
use client_core::encoding::Encoder;
use client_core::keys::SecretKey;
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;
use client_core::wire::assembled::{ClientMessage, ServerMessage};
use server::demo::{argmax, generate_keys, Session};
use server::eval::Evaluator;
use server::model::mnist::MnistTest;
use server::model::{import, ImportedModel};
use server::model::{CompiledModel, Model, ACTIVATION_CAP};
use server::protocol::{plan, Inference, Plan};

struct Faces {
    imported: ImportedModel,
    test: MnistTest,
    inputs: Vec<Vec<f64>>,
    model: Model,
    compiled: CompiledModel,
    plan: Plan,
}

fn faces(name: &str) -> Faces {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let test = MnistTest::load_faces(&data.join("faces")).unwrap();
    let imported = import(&data.join(format!("faces_{name}.onnx"))).unwrap();
    let inputs: Vec<Vec<f64>> = test
        .images
        .iter()
        .map(|img| img.iter().map(|&p| f64::from(p)).collect())
        .collect();
    let (model, bound) = imported.model.calibrated(&inputs, ACTIVATION_CAP);
    let compiled = CompiledModel::new(model.clone(), 8192).unwrap();
    let per_layer = compiled.ciphertexts_per_layer();
    assert_eq!(per_layer[0], 2, "conv output spans two ciphertexts");
    let plan = plan(&compiled, bound, 40, 10.0).unwrap();
    let steps = compiled.rotation_steps(8192).unwrap();
    eprintln!("faces_{name}: {} rotation keys", steps.len());
    assert!(steps.len() <= client_core::wire::messages::MAX_ROTATIONS);
    Faces {
        imported,
        test,
        inputs,
        model,
        compiled,
        plan,
    }
}

fn check(name: &str, images: &[usize]) {
    let Faces {
        imported,
        test,
        inputs,
        model,
        plan,
        ..
    } = faces(name);
    let mut session =
        Session::new(&plan.params, model.clone(), plan.cfg, [3; 32], [4; 32]).unwrap();
    for &i in images {
        let report = session.infer(&inputs[i]).unwrap();
        let reference = imported.reference(&test.images[i]).unwrap();
        assert_eq!(report.output.len(), 40);
        assert_eq!(
            argmax(&report.output),
            argmax(&reference),
            "faces_{name} image {i}: encrypted {:?}, tract {:?}",
            report.output,
            reference
        );
        let want = model.eval_plain(&inputs[i]);
        let bits = client_core::encoding::precision_bits(&want, &report.output);
        eprintln!(
            "faces_{name} image {i}: {bits:.1} bits, {} ms, {} rounds",
            report.total.as_millis(),
            report.rounds
        );
        assert!(bits >= 8.0, "faces_{name} image {i}: {bits:.1} bits");
    }
}

#[test]
fn faces_small_encrypted_equals_plaintext() {
    check("small", &[0, 61]);
}

#[test]
fn faces_large_encrypted_equals_plaintext() {
    check("large", &[119]);
}

/// |ReLU message at π(g)| / |y_g| for every neuron g of the first layer whose pre-activation is
/// not tiny, with the permutation the server drew.
/// Also returns the medians of |ReLU message| at the neurons' and at the dummies' positions.
fn first_round_ratios(f: &Faces, seed: u8) -> (Vec<f64>, Vec<f64>, Vec<usize>, (f64, f64)) {
    let params = &f.plan.params;
    let ctx = Arc::new(Context::new(params).unwrap());
    let encoder = Encoder::new(params.log_n());
    let eval = Evaluator::new(ctx.clone()).unwrap();
    let mut rng = Csprng::from_seed([seed; 32]);
    let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
    let steps = f.compiled.rotation_steps(params.slots()).unwrap();
    let (keys, _) = generate_keys(&ctx, &sk, &steps, &mut rng).unwrap();
    let mut server = Inference::new(&eval, Arc::new(keys), &f.compiled, &f.plan.cfg, [seed; 32]);
    let info = ServerInfo::in_process(server.input_spec(), f.compiled.rounds() as u32);
    let mut client = InProcessClient::new(&ctx, &sk, info);
    let x = &f.inputs[7];
    let ClientMessage::Input(cts) = client.start(x, &mut rng).unwrap() else {
        panic!("no input");
    };
    assert_eq!(cts.len(), 3, "im2col input in three ciphertexts");
    let ServerMessage::Round(round) = server.on_input(&cts).unwrap() else {
        panic!("no round");
    };
    assert_eq!(round.relu.len(), 2);
    let seen: Vec<f64> = round
        .relu
        .iter()
        .flat_map(|ct| {
            let int = decrypt_int(&ctx, &sk, ct).unwrap();
            encoder.decode(&int, ct.scale).unwrap()
        })
        .collect();
    let y = &f.model.pre_activations(x)[0];
    let pi = server.permutation(0).unwrap().to_vec();
    assert_eq!(pi.len(), seen.len());
    let big = y.iter().fold(0.0f64, |m, v| m.max(v.abs())) / 20.0;
    let (mut permuted, mut in_order) = (Vec::new(), Vec::new());
    for (g, &v) in y.iter().enumerate() {
        if v.abs() > big {
            permuted.push(seen[pi[g]].abs() / v.abs());
            in_order.push(seen[g].abs() / v.abs());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let real = median((0..y.len()).map(|g| seen[pi[g]].abs()).collect());
    let dummies = median((y.len()..pi.len()).map(|g| seen[pi[g]].abs()).collect());
    (permuted, in_order, pi, (real, dummies))
}

#[test]
fn spread_layer_is_permuted_across_both_ciphertexts_and_afresh() {
    let f = faces("small");
    let spread = 2f64.powi(f.plan.cfg.r_spread_bits as i32);
    let within = |r: &f64| (0.9..=spread * 1.1).contains(r);
    let (permuted, in_order, pi, (real, dummies)) = first_round_ratios(&f, 5);
    // Dummies are scaled copies of neurons: their magnitudes are alike.
    eprintln!("median |message|: neurons {real:.3}, dummies {dummies:.3}");
    assert!(
        (0.6..=1.0).contains(&(dummies / real)),
        "neurons {real}, dummies {dummies}"
    );
    assert!(permuted.len() > 1000, "{} large neurons", permuted.len());
    // At π(g) the client sees y_g·r_g with r_g ∈ [1, 2^spread] (up to noise)...
    let hits = permuted.iter().filter(|r| within(r)).count();
    assert!(
        hits * 100 >= permuted.len() * 99,
        "{hits} of {}",
        permuted.len()
    );
    // ...while at g itself the ratio lands in that range only by chance (the criterion above
    // tells the two apart).
    let chance = in_order.iter().filter(|r| within(r)).count();
    assert!(
        chance * 10 < in_order.len() * 9,
        "{chance} of {}",
        in_order.len()
    );
    // Neurons cross between the two ciphertexts.
    let (neurons, slots) = (f.model.layers[0].weights.rows, f.plan.params.slots());
    let crossing = (0..neurons)
        .filter(|&g| (g < slots) != (pi[g] < slots))
        .count();
    assert!(crossing > 3000, "{crossing} neurons change ciphertext");
    let (_, _, other, _) = first_round_ratios(&f, 6);
    assert_ne!(pi, other, "the same permutation twice");
}
