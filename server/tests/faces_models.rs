//! The committed AT&T faces networks (`tools/train_faces.py`) through our ONNX importer: the
//! plaintext model (tract) classifies the 120-image test split at the accuracy the training
//! script reported, and the lowered affine layers compute the same logits.

use std::path::Path;

use server::demo::argmax;
use server::model::import;
use server::model::mnist::MnistTest;

fn check(name: &str, min_accuracy: f64) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let test = MnistTest::load_faces(&data.join("faces")).unwrap();
    assert_eq!(test.images.len(), 120);
    let model = import(&data.join(format!("faces_{name}.onnx"))).unwrap();
    assert_eq!(model.model.input_len, 112 * 92);
    let mut hits = 0;
    for (i, (img, &label)) in test.images.iter().zip(&test.labels).enumerate() {
        let reference = model.reference(img).unwrap();
        assert_eq!(reference.len(), 40);
        hits += usize::from(argmax(&reference) == usize::from(label));
        if i % 40 == 0 {
            let x: Vec<f64> = img.iter().map(|&p| f64::from(p)).collect();
            let lowered = model.model.eval_plain(&x);
            for (a, b) in lowered.iter().zip(&reference) {
                assert!((a - f64::from(*b)).abs() < 1e-3, "image {i}: {a} vs {b}");
            }
        }
    }
    let accuracy = hits as f64 / test.images.len() as f64;
    eprintln!("faces_{name}: plaintext accuracy {:.2} %", 100.0 * accuracy);
    assert!(accuracy >= min_accuracy, "faces_{name}: {accuracy}");
}

#[test]
fn faces_small_classifies_the_test_split() {
    check("small", 0.95);
}

#[test]
fn faces_large_classifies_the_test_split() {
    check("large", 0.95);
}
