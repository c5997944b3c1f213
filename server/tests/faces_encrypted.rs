//! The faces networks through the whole protocol in process: the first layer spans several
//! ciphertexts (im2col input in 3, convolution output in 2, permuted by the Clos stages), and
//! the encrypted prediction must equal tract's on images of different people.

use std::path::Path;

use server::demo::{argmax, Session};
use server::model::import;
use server::model::mnist::MnistTest;
use server::protocol::{plan, CompiledModel, ACTIVATION_CAP};

fn check(name: &str, images: &[usize]) {
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
    assert_eq!(
        compiled.ciphertexts_per_layer()[0],
        2,
        "conv output spans two ciphertexts"
    );
    let plan = plan(&compiled, bound, 40, 10.0).unwrap();
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
