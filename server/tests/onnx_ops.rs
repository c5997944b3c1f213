//! Each lowered ONNX operator against tract on random inputs: small graphs are built here as
//! exporters write them (normalisation inside the graph, shape arithmetic, residual sums,
//! padding modes, groups and dilations), written to a file, imported, and the lowered affine
//! layers' output compared with tract's on random inputs.

use std::path::PathBuf;

use prost::Message;
use server::model::{import, ImportError};
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// A deterministic generator (splitmix64) for weights and inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    fn values(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.next() * scale) as f32).collect()
    }
}

/// A graph under construction.
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    rng: Rng,
    opset: i64,
}

enum Attr {
    I(i64),
    F(f32),
    Ints(Vec<i64>),
    S(&'static str),
}

impl Graph {
    fn new(seed: u64) -> Self {
        Self {
            nodes: Vec::new(),
            inits: Vec::new(),
            rng: Rng(seed),
            opset: 13,
        }
    }

    fn floats(&mut self, name: &str, dims: &[i64], values: Vec<f32>) -> String {
        self.inits.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            float_data: values,
            ..Default::default()
        });
        name.into()
    }

    fn random(&mut self, name: &str, dims: &[i64], scale: f64) -> String {
        let n = dims.iter().product::<i64>() as usize;
        let v = self.rng.values(n, scale);
        self.floats(name, dims, v)
    }

    fn ints(&mut self, name: &str, values: &[i64]) -> String {
        self.inits.push(TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: 7,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name.into()
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = format!("/{}_{}", op.to_lowercase(), self.nodes.len());
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = AttributeProto {
                    name: name.into(),
                    ..Default::default()
                };
                match a {
                    Attr::I(i) => {
                        p.i = i;
                        p.r#type = AttributeType::Int as i32;
                    }
                    Attr::F(f) => {
                        p.f = f;
                        p.r#type = AttributeType::Float as i32;
                    }
                    Attr::Ints(v) => {
                        p.ints = v;
                        p.r#type = AttributeType::Ints as i32;
                    }
                    Attr::S(s) => {
                        p.s = s.as_bytes().to_vec();
                        p.r#type = AttributeType::String as i32;
                    }
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            name: out.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    /// Writes the model with input "x" of `dims` and output `out` to a temporary file.
    fn write(&self, name: &str, dims: &[i64], out: &str) -> PathBuf {
        let info = |name: &str, dims: Option<&[i64]>| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1,
                    shape: dims.map(|d| TensorShapeProto {
                        dim: d
                            .iter()
                            .map(|&v| tensor_shape_proto::Dimension {
                                value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            graph: Some(GraphProto {
                name: name.into(),
                node: self.nodes.clone(),
                initializer: self.inits.clone(),
                input: vec![info("x", Some(dims))],
                output: vec![info(out, None)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("hefun-onnx-ops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.onnx"));
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        path
    }
}

/// Imports the model and checks the lowered layers against tract on random inputs; returns the
/// number of protocol layers.
fn agrees(g: &Graph, name: &str, dims: &[i64], out: &str) -> usize {
    let path = g.write(name, dims, out);
    let imported = import(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let n = dims.iter().product::<i64>() as usize;
    let mut rng = Rng(7);
    for trial in 0..4 {
        let x = rng.values(n, 1.0);
        let want = imported.reference(&x).unwrap();
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let got = imported.model.eval_plain(&x64);
        assert_eq!(got.len(), want.len(), "{name}: output length");
        let scale = want.iter().fold(1.0f64, |m, &v| m.max(f64::from(v).abs()));
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - f64::from(*b)).abs() <= 2e-5 * scale,
                "{name}, trial {trial}, output {i}: lowered {a}, tract {b}"
            );
        }
    }
    imported.model.layers.len()
}

#[test]
fn normalisation_inside_the_graph_then_padded_strided_conv() {
    let mut g = Graph::new(1);
    let mean = g.random("mean", &[1, 2, 1, 1], 0.5);
    let std = g.floats("std", &[], vec![0.3081]);
    let x = g.node("Sub", &["x", &mean], vec![]);
    let x = g.node("Div", &[&x, &std], vec![]);
    let w = g.random("w", &[3, 2, 3, 3], 0.4);
    let b = g.random("b", &[3], 0.1);
    let c = g.node(
        "Conv",
        &[&x, &w, &b],
        vec![
            ("pads", Attr::Ints(vec![1, 0, 2, 1])),
            ("strides", Attr::Ints(vec![2, 1])),
        ],
    );
    let r = g.node("Relu", &[&c], vec![]);
    let f = g.node("Flatten", &[&r], vec![("axis", Attr::I(1))]);
    // Conv output: 3 × ((6+3−3)/2+1 = 4) × (5+1−3+1 = 4) = 48.
    let w2 = g.random("w2", &[4, 48], 0.3);
    let out = g.node(
        "Gemm",
        &[&f, &w2],
        vec![("transB", Attr::I(1)), ("alpha", Attr::F(0.5))],
    );
    assert_eq!(agrees(&g, "norm_conv", &[1, 2, 6, 5], &out), 2);
}

#[test]
fn grouped_dilated_and_same_padded_convolutions() {
    let mut g = Graph::new(2);
    let w = g.random("w", &[4, 2, 3, 3], 0.4);
    let c = g.node(
        "Conv",
        &["x", &w],
        vec![("group", Attr::I(2)), ("dilations", Attr::Ints(vec![2, 1]))],
    );
    let w2 = g.random("w2", &[4, 1, 2, 2], 0.4);
    let c = g.node(
        "Conv",
        &[&c, &w2],
        vec![
            ("group", Attr::I(4)),
            ("auto_pad", Attr::S("SAME_UPPER")),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    );
    agrees(&g, "grouped", &[1, 4, 7, 7], &c);
}

#[test]
fn batch_norm_and_pools() {
    for (include_pad, ceil) in [(0, 0), (1, 0), (0, 1)] {
        let mut g = Graph::new(3);
        let scale = g.random("gamma", &[3], 1.0);
        let bias = g.random("beta", &[3], 0.5);
        let mean = g.random("mean", &[3], 0.5);
        let var: Vec<f32> = g.rng.values(3, 0.5).iter().map(|v| v.abs() + 0.5).collect();
        let var = g.floats("var", &[3], var);
        let bn = g.node(
            "BatchNormalization",
            &["x", &scale, &bias, &mean, &var],
            vec![("epsilon", Attr::F(1e-3))],
        );
        let p = g.node(
            "AveragePool",
            &[&bn],
            vec![
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(vec![2, 2])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ("count_include_pad", Attr::I(include_pad)),
                ("ceil_mode", Attr::I(ceil)),
            ],
        );
        let gp = g.node("GlobalAveragePool", &[&p], vec![]);
        agrees(
            &g,
            &format!("pools_{include_pad}_{ceil}"),
            &[1, 3, 8, 8],
            &gp,
        );
    }
}

#[test]
fn residual_block_within_a_segment() {
    let mut g = Graph::new(4);
    let w = g.random("w", &[2, 1, 3, 3], 0.5);
    let c = g.node(
        "Conv",
        &["x", &w],
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    );
    let h = g.node("Relu", &[&c], vec![]);
    let w2 = g.random("w2", &[2, 2, 3, 3], 0.3);
    let c2 = g.node(
        "Conv",
        &[&h, &w2],
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    );
    let sum = g.node("Add", &[&c2, &h], vec![]);
    let r = g.node("Relu", &[&sum], vec![]);
    // Axis −3 of [1, 2, 5, 5]: the batch axis stays apart, as with axis 1.
    let f = g.node("Flatten", &[&r], vec![("axis", Attr::I(-3))]);
    let w3 = g.random("w3", &[50, 3], 0.2);
    let out = g.node("MatMul", &[&f, &w3], vec![]);
    assert_eq!(agrees(&g, "residual", &[1, 1, 5, 5], &out), 3);
}

#[test]
fn values_moved_by_transpose_reshape_concat_pad_and_slice() {
    for mode in ["constant", "reflect", "edge"] {
        let mut g = Graph::new(5);
        let t = g.node(
            "Transpose",
            &["x"],
            vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        );
        let pads = g.ints("pads", &[0, 1, 2, 0, 0, 2, 1, 0]);
        let fill = g.floats("fill", &[], vec![0.25]);
        // A constant_value only with mode "constant", as exporters write it (tract pads with it
        // whatever the mode; the ONNX spec ignores it for reflect and edge).
        let p = if mode == "constant" {
            g.node("Pad", &[&t, &pads, &fill], vec![("mode", Attr::S(mode))])
        } else {
            g.node("Pad", &[&t, &pads], vec![("mode", Attr::S(mode))])
        };
        let starts = g.ints("starts", &[1, 0]);
        let ends = g.ints("ends", &[-1, 100]);
        let axes = g.ints("axes", &[1, 2]);
        let s = g.node("Slice", &[&p, &starts, &ends, &axes], vec![]);
        let shape = g.ints("shape", &[1, -1]);
        let flat = g.node("Reshape", &[&s, &shape], vec![]);
        let extra = g.random("extra", &[1, 3], 1.0);
        let cat = g.node("Concat", &[&extra, &flat], vec![("axis", Attr::I(1))]);
        let ax0 = g.ints("ax0", &[0]);
        let sq = g.node("Squeeze", &[&cat, &ax0], vec![]);
        let us = g.node("Unsqueeze", &[&sq, &ax0], vec![]);
        let n = 3 + 4 * (3 + 3) * 2;
        let w = g.random("w", &[n, 5], 0.2);
        let out = g.node("MatMul", &[&us, &w], vec![]);
        agrees(&g, &format!("movement_{mode}"), &[1, 2, 3, 3], &out);
    }
}

#[test]
fn gemm_variants_and_a_constant_times_a_value() {
    let mut g = Graph::new(6);
    let w = g.random("w", &[6, 4], 0.5);
    let c = g.random("c", &[4], 0.5);
    let y = g.node(
        "Gemm",
        &["x", &w, &c],
        vec![("alpha", Attr::F(0.7)), ("beta", Attr::F(-1.5))],
    );
    let yt = g.node("Transpose", &[&y], vec![]);
    let a = g.random("a", &[3, 4], 0.5);
    let z = g.node("MatMul", &[&a, &yt], vec![]);
    let zt = g.node("Transpose", &[&z], vec![]);
    let w2 = g.random("w2", &[2, 3], 0.5);
    let out = g.node("Gemm", &[&zt, &w2], vec![("transB", Attr::I(1))]);
    agrees(&g, "gemm", &[1, 6], &out);
}

#[test]
fn exporter_shape_arithmetic_and_elementwise_constants() {
    let mut g = Graph::new(7);
    let s = g.node("Shape", &["x"], vec![]);
    let zero = g.ints("zero", &[0]);
    let batch = g.node("Gather", &[&s, &zero], vec![("axis", Attr::I(0))]);
    let minus1 = g.ints("minus1", &[-1]);
    let target = g.node("Concat", &[&batch, &minus1], vec![("axis", Attr::I(0))]);
    let scale = g.random("scale", &[2, 1, 1], 2.0);
    let x = g.node("Mul", &["x", &scale], vec![]);
    let x = g.node("Neg", &[&x], vec![]);
    let one = g.floats("one", &[], vec![1.0]);
    let x = g.node("Sub", &[&one, &x], vec![]);
    let flat = g.node("Reshape", &[&x, &target], vec![]);
    let w = g.random("w", &[18, 4], 0.3);
    let out = g.node("MatMul", &[&flat, &w], vec![]);
    agrees(&g, "shape_arith", &[1, 2, 3, 3], &out);
}

#[test]
fn a_final_softmax_is_dropped_with_a_note() {
    let mut g = Graph::new(8);
    let w = g.random("w", &[5, 3], 0.5);
    let y = g.node("MatMul", &["x", &w], vec![]);
    let out = g.node("Softmax", &[&y], vec![("axis", Attr::I(1))]);
    let path = g.write("softmax", &[1, 5], &out);
    let imported = import(&path).unwrap();
    assert_eq!(imported.notes.len(), 1, "{:?}", imported.notes);
    let mut rng = Rng(9);
    let x = rng.values(5, 1.0);
    let probs = imported.reference(&x).unwrap();
    let logits = imported
        .model
        .eval_plain(&x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
    let argmax = |v: &[f64]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
    let probs: Vec<f64> = probs.iter().map(|&p| f64::from(p)).collect();
    assert_eq!(argmax(&logits), argmax(&probs));
}

#[test]
fn every_unsupported_operator_is_named_in_one_error() {
    let mut g = Graph::new(10);
    let w = g.random("w", &[4, 4], 0.5);
    let y = g.node("MatMul", &["x", &w], vec![]);
    let y = g.node("Sigmoid", &[&y], vec![]);
    let y = g.node("Relu", &[&y], vec![]);
    let out = g.node("Tanh", &[&y], vec![]);
    let path = g.write("unsupported", &[1, 4], &out);
    let err = import(&path).err().expect("must be refused");
    let ImportError::Unsupported { nodes } = &err else {
        panic!("{err}");
    };
    let ops: Vec<&str> = nodes.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops, ["Sigmoid", "Tanh"], "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/sigmoid_1") && text.contains("/tanh_3") && text.contains("Gemm"),
        "{text}"
    );
}

#[test]
fn skip_connections_across_activations_are_carried_through_the_round() {
    // A signed value read after the activation: carried as ReLU(y) and ReLU(−y).
    let mut g = Graph::new(11);
    let w = g.random("w", &[4, 4], 0.5);
    let y = g.node("MatMul", &["x", &w], vec![]);
    let r = g.node("Relu", &[&y], vec![]);
    let w2 = g.random("w2", &[4, 4], 0.5);
    let z = g.node("MatMul", &[&r, &w2], vec![]);
    let out = g.node("Add", &[&z, &y], vec![]);
    assert_eq!(agrees(&g, "skip_signed", &[1, 4], &out), 2);
    let imported = import(&g.write("skip_signed", &[1, 4], &out)).unwrap();
    assert_eq!(imported.model.layers[0].weights.rows, 4 + 2 * 4);

    // A residual block over an activation's output (≥ 0): carried as itself.
    let mut g = Graph::new(12);
    let w = g.random("w", &[6, 5], 0.5);
    let h = g.node("MatMul", &["x", &w], vec![]);
    let h = g.node("Relu", &[&h], vec![]);
    let w2 = g.random("w2", &[5, 5], 0.5);
    let f = g.node("MatMul", &[&h, &w2], vec![]);
    let f = g.node("Relu", &[&f], vec![]);
    let w3 = g.random("w3", &[5, 5], 0.5);
    let f = g.node("MatMul", &[&f, &w3], vec![]);
    let s = g.node("Add", &[&f, &h], vec![]);
    let o = g.node("Relu", &[&s], vec![]);
    let w4 = g.random("w4", &[5, 3], 0.5);
    let out = g.node("MatMul", &[&o, &w4], vec![]);
    assert_eq!(agrees(&g, "skip_residual", &[1, 6], &out), 4);
    let imported = import(&g.write("skip_residual", &[1, 6], &out)).unwrap();
    assert_eq!(imported.model.layers[1].weights.rows, 5 + 5);
}

#[test]
fn bundled_mnist_models_keep_their_first_convolution_and_agree() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    for name in ["mnist_small", "mnist_large"] {
        let path = data.join(format!("{name}.onnx"));
        let imported = import(&path).unwrap();
        assert!(
            imported.model.first_conv.is_some(),
            "{name}: first convolution lost"
        );
        let mut rng = Rng(11);
        for _ in 0..3 {
            let x: Vec<f32> = rng.values(784, 1.0).iter().map(|v| v.abs()).collect();
            let want = imported.reference(&x).unwrap();
            let got = imported
                .model
                .eval_plain(&x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            for (a, b) in got.iter().zip(&want) {
                assert!((a - f64::from(*b)).abs() < 1e-4, "{name}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn hefun_inspect_reports_a_model_or_every_unsupported_node() {
    let run = |model: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hefun"))
            .args(["inspect", model])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let out = run("small");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "rounds: 2",
        "| 1 | 100 × 845 |",
        "preset hefun-n8192",
        "16 rotations",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }

    let mut g = Graph::new(12);
    let w = g.random("w", &[4, 4], 0.5);
    let y = g.node("MatMul", &["x", &w], vec![]);
    let y = g.node("HardSigmoid", &[&y], vec![]);
    let out_name = g.node("Erf", &[&y], vec![]);
    let path = g.write("inspect_unsupported", &[1, 4], &out_name);
    let out = run(path.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("HardSigmoid at node '/hardsigmoid_1'")
            && err.contains("Erf at node '/erf_2'"),
        "{err}"
    );
}

#[test]
fn leaky_relu_prelu_and_clip_take_one_round_each() {
    let mut g = Graph::new(13);
    let w = g.random("w", &[3, 1, 3, 3], 0.6);
    let c = g.node("Conv", &["x", &w], vec![]);
    let slope = g.random("slope", &[3, 1, 1], 0.3);
    let p = g.node("PRelu", &[&c, &slope], vec![]);
    let f = g.node("Flatten", &[&p], vec![]);
    let w2 = g.random("w2", &[27, 8], 0.4);
    let y = g.node("MatMul", &[&f, &w2], vec![]);
    let y = g.node("LeakyRelu", &[&y], vec![("alpha", Attr::F(0.1))]);
    let w3 = g.random("w3", &[8, 8], 0.6);
    let y = g.node("MatMul", &[&y, &w3], vec![]);
    let lo = g.floats("lo", &[], vec![-0.2]);
    let hi = g.floats("hi", &[], vec![0.3]);
    let y = g.node("Clip", &[&y, &lo, &hi], vec![]);
    let w4 = g.random("w4", &[8, 6], 0.6);
    let y = g.node("MatMul", &[&y, &w4], vec![]);
    let y = g.node("Clip", &[&y, "", &hi], vec![]);
    let w5 = g.random("w5", &[6, 2], 0.6);
    let out = g.node("MatMul", &[&y, &w5], vec![]);
    // Four activations: four rounds, then the output layer.
    assert_eq!(agrees(&g, "activations", &[1, 1, 5, 5], &out), 5);
}
