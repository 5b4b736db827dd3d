//! Every GPU kernel against the CPU provider on random shapes and attributes (odd sizes, tails
//! that do not fill a tile), each asserting the node ran on wgpu (ONNX Runtime's
//! ExpectedEPNodeAssignment::All). Sized for lavapipe, which runs the shaders on the CPU.
mod common;

use common::*;
use kiln_ir::Attribute;

#[test]
fn conv_random_geometries() {
    let mut rng = Rng::new(1);
    for case in 0..14 {
        let group = *rng.pick(&[1, 1, 2, 3]);
        let cg = rng.int(1, 4);
        let c = cg * group;
        let mg = *rng.pick(&[1, 5, 17, 20, 70]);
        let m = mg * group;
        let (kh, kw) = (rng.int(1, 3), rng.int(1, 3));
        let (h, w) = (rng.int(kh + 2, 11), rng.int(kw + 2, 13));
        let batch = rng.int(1, 2);
        let s = [rng.int(1, 2) as i64, rng.int(1, 2) as i64];
        let d = [rng.int(1, 2) as i64, 1];
        let mut attrs = vec![
            Attribute::ints("strides", &s),
            Attribute::ints("dilations", &d),
            Attribute::int("group", group as i64),
            Attribute::ints("kernel_shape", &[kh as i64, kw as i64]),
        ];
        match case % 4 {
            0 => attrs.push(Attribute::string("auto_pad", "SAME_UPPER")),
            1 => attrs.push(Attribute::string("auto_pad", "SAME_LOWER")),
            2 => attrs.push(Attribute::ints(
                "pads",
                &[
                    rng.int(0, 2) as i64,
                    rng.int(0, 1) as i64,
                    rng.int(0, 1) as i64,
                    rng.int(0, 2) as i64,
                ],
            )),
            _ => attrs.push(Attribute::string("auto_pad", "VALID")),
        }
        let bias = if case % 3 == 0 {
            In::Absent
        } else {
            In::Weight(vec![m])
        };
        let o = op(
            "Conv",
            vec![
                In::Data(vec![batch, c, h, w]),
                In::Weight(vec![m, cg, kh, kw]),
                bias,
            ],
        )
        .attrs(attrs);
        check_all_on_gpu(
            &format!("conv case {case} (g{group} c{c} m{m} {kh}x{kw} s{s:?} d{d:?} {h}x{w})"),
            &o,
            17,
            &mut rng,
        );
    }
}

#[test]
fn depthwise_conv() {
    let mut rng = Rng::new(2);
    let o = op(
        "Conv",
        vec![
            In::Data(vec![1, 12, 9, 10]),
            In::Weight(vec![12, 1, 3, 3]),
            In::Weight(vec![12]),
        ],
    )
    .attrs(vec![
        Attribute::int("group", 12),
        Attribute::ints("pads", &[1, 1, 1, 1]),
        Attribute::ints("strides", &[2, 2]),
    ]);
    check_all_on_gpu("depthwise 3x3/2", &o, 17, &mut rng);
}

/// FusedConv per activation class (no parameter, one, two), with `Z`, and without `B`.
#[test]
fn fused_conv_activations_with_and_without_z_and_b() {
    let mut rng = Rng::new(3);
    let acts: [(&str, Vec<f32>); 7] = [
        ("Relu", vec![]),
        ("Sigmoid", vec![]),
        ("Tanh", vec![]),
        ("LeakyRelu", vec![0.1]),
        ("Clip", vec![-0.3, 0.4]),
        ("HardSigmoid", vec![0.3, 0.45]),
        ("Identity", vec![]),
    ];
    for (i, (act, params)) in acts.iter().enumerate() {
        for (with_b, with_z) in [(true, false), (true, true), (false, true), (false, false)] {
            if (i + with_b as usize + with_z as usize) % 2 == 1 && *act != "Relu" {
                continue; // half the grid keeps lavapipe time down; Relu gets all four
            }
            let mut attrs = vec![
                Attribute::string("activation", act),
                Attribute::ints("pads", &[1, 1, 1, 1]),
                Attribute::ints("kernel_shape", &[3, 3]),
            ];
            if !params.is_empty() {
                attrs.push(Attribute::floats("activation_params", params));
            }
            let o = op(
                "FusedConv",
                vec![
                    In::Data(vec![1, 6, 7, 9]),
                    In::Weight(vec![18, 6, 3, 3]),
                    if with_b {
                        In::Weight(vec![18])
                    } else {
                        In::Absent
                    },
                    if with_z {
                        In::Data(vec![1, 18, 7, 9])
                    } else {
                        In::Absent
                    },
                ],
            )
            .domain("com.microsoft")
            .attrs(attrs);
            check_all_on_gpu(
                &format!("FusedConv {act} B={with_b} Z={with_z}"),
                &o,
                17,
                &mut rng,
            );
        }
    }
    let silu = op(
        "FusedConv",
        vec![
            In::Data(vec![1, 4, 6, 6]),
            In::Weight(vec![16, 4, 1, 1]),
            In::Weight(vec![16]),
        ],
    )
    .domain(kiln_ops::ops_domain::KILN)
    .attrs(vec![
        Attribute::string("activation", "SiLU"),
        Attribute::float("alpha", 1.0),
    ]);
    check_all_on_gpu("ai.kiln FusedConv SiLU", &silu, 17, &mut rng);
}

#[test]
fn gemm_and_fused_gemm() {
    let mut rng = Rng::new(4);
    for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let (m, k, n) = (rng.int(1, 70), rng.int(1, 40), rng.int(1, 70));
        let a = if ta == 1 { vec![k, m] } else { vec![m, k] };
        let b = if tb == 1 { vec![n, k] } else { vec![k, n] };
        let c = rng
            .pick(&[vec![n], vec![m, n], vec![1], vec![m, 1]])
            .clone();
        let o = op("Gemm", vec![In::Data(a), In::Weight(b), In::Weight(c)]).attrs(vec![
            Attribute::int("transA", ta),
            Attribute::int("transB", tb),
            Attribute::float("alpha", 0.7),
            Attribute::float("beta", 1.3),
        ]);
        check_all_on_gpu(&format!("Gemm tA{ta} tB{tb} {m}x{k}x{n}"), &o, 13, &mut rng);
    }
    let no_c = op("Gemm", vec![In::Data(vec![3, 5]), In::Weight(vec![5, 4])]);
    check_all_on_gpu("Gemm without C", &no_c, 13, &mut rng);
    let fused = op(
        "FusedGemm",
        vec![
            In::Data(vec![5, 9]),
            In::Weight(vec![9, 66]),
            In::Weight(vec![66]),
        ],
    )
    .domain("com.microsoft")
    .attrs(vec![
        Attribute::string("activation", "LeakyRelu"),
        Attribute::float("activation_alpha", 0.2),
    ]);
    check_all_on_gpu("FusedGemm LeakyRelu", &fused, 13, &mut rng);
}

#[test]
fn matmul_batched_and_broadcast() {
    let mut rng = Rng::new(5);
    let cases: [(Vec<usize>, Vec<usize>); 5] = [
        (vec![13, 7], vec![7, 65]),
        (vec![2, 3, 5, 7], vec![7, 4]),
        (vec![5], vec![5, 3]),
        (vec![2, 1, 4, 6], vec![3, 6, 5]),
        (vec![4, 9], vec![9]),
    ];
    for (a, b) in cases {
        let what = format!("MatMul {a:?} x {b:?}");
        check_all_on_gpu(
            &what,
            &op("MatMul", vec![In::Data(a), In::Data(b)]),
            13,
            &mut rng,
        );
    }
}

#[test]
fn pools() {
    let mut rng = Rng::new(6);
    for case in 0..8 {
        let is_max = case % 2 == 0;
        let (kh, kw) = (rng.int(1, 3), rng.int(2, 3));
        let mut attrs = vec![
            Attribute::ints("kernel_shape", &[kh as i64, kw as i64]),
            Attribute::ints("strides", &[rng.int(1, 2) as i64, rng.int(1, 3) as i64]),
            Attribute::ints(
                "pads",
                &[rng.int(0, kh - 1) as i64, 1, 0, rng.int(0, 1) as i64],
            ),
            Attribute::int("ceil_mode", (case / 2 % 2) as i64),
        ];
        if is_max && case >= 4 {
            attrs.push(Attribute::ints("dilations", &[2, 1]));
        }
        if !is_max {
            attrs.push(Attribute::int("count_include_pad", (case / 4) as i64));
        }
        let o = op(
            if is_max { "MaxPool" } else { "AveragePool" },
            vec![In::Data(vec![2, 3, rng.int(6, 12), rng.int(5, 11)])],
        )
        .attrs(attrs);
        check_all_on_gpu(&format!("pool case {case}"), &o, 17, &mut rng);
    }
    for g in ["GlobalAveragePool", "GlobalMaxPool"] {
        check_all_on_gpu(g, &op(g, vec![In::Data(vec![2, 5, 7, 3])]), 17, &mut rng);
    }
}

#[test]
fn unary_ops() {
    let mut rng = Rng::new(7);
    let ops: [(&str, Vec<Attribute>); 20] = [
        ("Relu", vec![]),
        ("Sigmoid", vec![]),
        ("Tanh", vec![]),
        ("LeakyRelu", vec![Attribute::float("alpha", 0.3)]),
        ("HardSigmoid", vec![]),
        ("HardSwish", vec![]),
        ("Elu", vec![]),
        ("Selu", vec![]),
        ("Softplus", vec![]),
        ("Softsign", vec![]),
        ("Exp", vec![]),
        ("Neg", vec![]),
        ("Abs", vec![]),
        ("Floor", vec![]),
        ("Ceil", vec![]),
        ("Erf", vec![]),
        ("Sin", vec![]),
        ("Cos", vec![]),
        ("Sign", vec![]),
        ("Identity", vec![]),
    ];
    for (name, attrs) in ops {
        let o = op(name, vec![In::Data(vec![3, 257])]).attrs(attrs);
        check_all_on_gpu(name, &o, 17, &mut rng);
    }
    // Inputs are in [-1, 1): Sqrt and Log give NaN for the negatives on both providers, and the
    // comparison holds NaN equal to NaN.
    for name in ["Sqrt", "Log", "Reciprocal"] {
        check_all_on_gpu(name, &op(name, vec![In::Data(vec![40])]), 17, &mut rng);
    }
    let clip = op(
        "Clip",
        vec![
            In::Data(vec![5, 9]),
            In::Floats(vec![], vec![-0.2]),
            In::Floats(vec![], vec![0.5]),
        ],
    );
    check_all_on_gpu("Clip", &clip, 13, &mut rng);
}

#[test]
fn binary_broadcasting() {
    let mut rng = Rng::new(8);
    let shapes: [(Vec<usize>, Vec<usize>); 5] = [
        (vec![4, 5, 6], vec![4, 5, 6]),
        (vec![2, 3, 4, 5], vec![3, 1, 1]),
        (vec![1, 6], vec![7, 1]),
        (vec![3, 1, 5], vec![1]),
        (vec![2, 1, 3, 1, 2, 3, 2], vec![4, 3, 5, 1, 1, 2]),
    ];
    for name in ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu"] {
        for (i, (a, b)) in shapes.iter().enumerate() {
            if (name == "PRelu" && i == 2) || (name == "Pow" && i > 1) {
                continue; // PRelu's slope broadcasts one way only; Pow needs few cases
            }
            let o = op(name, vec![In::Data(a.clone()), In::Data(b.clone())]);
            check_all_on_gpu(&format!("{name} {a:?} {b:?}"), &o, 17, &mut rng);
        }
    }
}

#[test]
fn movement_ops() {
    let mut rng = Rng::new(9);
    let x = || In::Data(vec![2, 3, 4, 5]);
    let cases: Vec<(&str, Op)> = vec![
        (
            "Transpose",
            op("Transpose", vec![x()]).attrs(vec![Attribute::ints("perm", &[0, 2, 3, 1])]),
        ),
        ("Transpose default", op("Transpose", vec![x()])),
        ("Reshape", op("Reshape", vec![x(), In::Ints(vec![6, -1])])),
        (
            "Flatten",
            op("Flatten", vec![x()]).attrs(vec![Attribute::int("axis", 2)]),
        ),
        ("Unsqueeze", op("Unsqueeze", vec![x(), In::Ints(vec![1])])),
        (
            "Squeeze",
            op("Squeeze", vec![In::Data(vec![2, 1, 5]), In::Ints(vec![1])]),
        ),
        (
            "Slice",
            op(
                "Slice",
                vec![
                    x(),
                    In::Ints(vec![1, 0]),
                    In::Ints(vec![3, 5]),
                    In::Ints(vec![2, 3]),
                    In::Ints(vec![1, 2]),
                ],
            ),
        ),
        (
            "Slice negative step",
            op(
                "Slice",
                vec![
                    x(),
                    In::Ints(vec![-1]),
                    In::Ints(vec![-100]),
                    In::Ints(vec![3]),
                    In::Ints(vec![-2]),
                ],
            ),
        ),
        (
            "Concat",
            op(
                "Concat",
                vec![
                    x(),
                    In::Data(vec![2, 1, 4, 5]),
                    In::Weight(vec![2, 2, 4, 5]),
                ],
            )
            .attrs(vec![Attribute::int("axis", 1)]),
        ),
        (
            "Concat last axis",
            op("Concat", vec![In::Data(vec![3, 2]), In::Data(vec![3, 5])])
                .attrs(vec![Attribute::int("axis", -1)]),
        ),
        (
            "Split",
            op("Split", vec![In::Data(vec![2, 7, 3]), In::Ints(vec![2, 5])])
                .attrs(vec![Attribute::int("axis", 1)])
                .outputs(2),
        ),
        (
            "Split equal",
            op("Split", vec![In::Data(vec![6, 4])]).outputs(3),
        ),
        (
            "Expand",
            op(
                "Expand",
                vec![In::Data(vec![3, 1]), In::Ints(vec![2, 3, 4])],
            ),
        ),
        (
            "SpaceToDepth",
            op("SpaceToDepth", vec![In::Data(vec![1, 3, 4, 6])])
                .attrs(vec![Attribute::int("blocksize", 2)]),
        ),
        (
            "DepthToSpace DCR",
            op("DepthToSpace", vec![In::Data(vec![1, 8, 2, 3])])
                .attrs(vec![Attribute::int("blocksize", 2)]),
        ),
        (
            "DepthToSpace CRD",
            op("DepthToSpace", vec![In::Data(vec![1, 8, 2, 3])]).attrs(vec![
                Attribute::int("blocksize", 2),
                Attribute::string("mode", "CRD"),
            ]),
        ),
        (
            "Pad",
            op(
                "Pad",
                vec![
                    x(),
                    In::Ints(vec![0, 1, 2, 0, 0, 0, -1, 3]),
                    In::Floats(vec![], vec![0.5]),
                ],
            ),
        ),
    ];
    for (what, o) in cases {
        check_all_on_gpu(what, &o, 18, &mut rng);
    }
}

#[test]
fn softmax_resize_norm_reduce() {
    let mut rng = Rng::new(10);
    for (opset, axis) in [(11, 1), (13, 1), (13, -1)] {
        for name in ["Softmax", "LogSoftmax"] {
            let o =
                op(name, vec![In::Data(vec![2, 3, 7])]).attrs(vec![Attribute::int("axis", axis)]);
            check_all_on_gpu(
                &format!("{name} opset {opset} axis {axis}"),
                &o,
                opset,
                &mut rng,
            );
        }
    }
    let resizes: [(&str, Vec<Attribute>, Vec<f32>); 4] = [
        (
            "nearest asymmetric floor",
            vec![
                Attribute::string("mode", "nearest"),
                Attribute::string("coordinate_transformation_mode", "asymmetric"),
                Attribute::string("nearest_mode", "floor"),
            ],
            vec![1.0, 1.0, 2.0, 2.0],
        ),
        (
            "nearest half_pixel",
            vec![Attribute::string("mode", "nearest")],
            vec![1.0, 1.0, 1.5, 0.6],
        ),
        (
            "linear half_pixel",
            vec![Attribute::string("mode", "linear")],
            vec![1.0, 1.0, 2.0, 1.7],
        ),
        (
            "linear align_corners",
            vec![
                Attribute::string("mode", "linear"),
                Attribute::string("coordinate_transformation_mode", "align_corners"),
            ],
            vec![1.0, 1.0, 0.5, 3.0],
        ),
    ];
    for (what, attrs, scales) in resizes {
        let o = op(
            "Resize",
            vec![
                In::Data(vec![1, 2, 5, 6]),
                In::Absent,
                In::Floats(vec![4], scales),
            ],
        )
        .attrs(attrs);
        check_all_on_gpu(&format!("Resize {what}"), &o, 13, &mut rng);
    }
    let bn = op(
        "BatchNormalization",
        vec![
            In::Data(vec![2, 4, 3, 5]),
            In::Weight(vec![4]),
            In::Weight(vec![4]),
            In::Weight(vec![4]),
            In::Floats(vec![4], vec![0.5, 1.0, 2.0, 0.1]),
        ],
    );
    check_all_on_gpu("BatchNormalization", &bn, 15, &mut rng);
    for (name, axes, keep) in [
        ("ReduceMean", vec![2, 3], 1),
        ("ReduceSum", vec![1], 0),
        ("ReduceMax", vec![0, 2], 1),
        ("ReduceMin", vec![], 0),
        ("ReduceSumSquare", vec![-1], 1),
    ] {
        let o = op(
            name,
            vec![
                In::Data(vec![2, 3, 4, 5]),
                if axes.is_empty() {
                    In::Absent
                } else {
                    In::Ints(axes.clone())
                },
            ],
        )
        .attrs(vec![Attribute::int("keepdims", keep)]);
        check_all_on_gpu(&format!("{name} {axes:?}"), &o, 18, &mut rng);
    }
}
