//! Reductions past what one shader invocation may loop over: lavapipe stops a loop after 65,535
//! iterations (a ReduceSum of 25,600 ones once gave 21,845), so every reduction, global pool
//! and Softmax row here is longer than that, along contiguous and strided axes, and each must
//! match the CPU with every node on wgpu. So do pools with large windows and products whose K
//! runs past one launch of the tile kernels.
mod common;

use common::*;
use kiln_ir::Attribute;

/// Sums of `n` values in [-1, 1] whose rounding depends on the order of summation.
fn slack(n: usize) -> f64 {
    3e-7 * n as f64
}

#[test]
fn sums_of_ones_are_exact() {
    for n in [25_600usize, 65_537, 200_000] {
        let o = op("ReduceSum", vec![In::Floats(vec![1, n], vec![1.0; n])])
            .attrs(vec![Attribute::int("keepdims", 0)]);
        let mut rng = Rng::new(1);
        let (m, feeds) = build(&o, 13, kiln_ir::DataType::F32, &mut rng);
        let gpu = session(
            &m,
            vec![wgpu(Default::default())],
            kiln_runtime::Level::Disabled,
        );
        assert_eq!(gpu.assignment().nodes_per_ep(2), vec![1, 0]);
        let out = values(&gpu.run(feeds).unwrap());
        assert_eq!(out[0].1, vec![n as f64], "ReduceSum of {n} ones");
    }
}

#[test]
fn every_reduction_over_long_axes() {
    let mut rng = Rng::new(2);
    // (shape, axes): all axes, the last (contiguous), a middle one (strided), and a pair.
    let cases: [(Vec<usize>, Vec<i64>); 5] = [
        (vec![3, 160, 160], vec![]),
        (vec![2, 70_001], vec![1]),
        (vec![1, 70_000, 3], vec![1]),
        (vec![2, 300, 300, 2], vec![1, 2]),
        (vec![5, 13], vec![1]),
    ];
    for (shape, axes) in &cases {
        let count: usize = if axes.is_empty() {
            shape.iter().product()
        } else {
            axes.iter().map(|&a| shape[a as usize]).product()
        };
        for name in [
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceSumSquare",
        ] {
            let o = op(
                name,
                vec![
                    In::Data(shape.clone()),
                    if axes.is_empty() {
                        In::Absent
                    } else {
                        In::Ints(axes.clone())
                    },
                ],
            )
            .attrs(vec![Attribute::int("keepdims", 1)]);
            check_all_on_gpu_within(
                &format!("{name} of {shape:?} over {axes:?}"),
                &o,
                18,
                &mut rng,
                slack(count),
            );
        }
    }
}

#[test]
fn global_pools_over_large_maps() {
    let mut rng = Rng::new(3);
    for shape in [
        vec![1, 3, 160, 160],
        vec![2, 2, 300, 300],
        vec![1, 1, 700, 700],
    ] {
        let area: usize = shape[2..].iter().product();
        let n: usize = shape.iter().product();
        // A ramp within each plane (its maximum at the end, its mean 0.5) plus noise: a
        // reduction cut short misses both.
        let ramp: Vec<f32> = (0..n)
            .map(|i| (i % area) as f32 / area as f32 + 0.01 * rng.f32())
            .collect();
        for name in ["GlobalAveragePool", "GlobalMaxPool"] {
            let o = op(name, vec![In::Floats(shape.clone(), ramp.clone())]);
            check_all_on_gpu_within(&format!("{name} {shape:?}"), &o, 17, &mut rng, slack(area));
            let o = op(name, vec![In::Data(shape.clone())]);
            check_all_on_gpu_within(
                &format!("{name} {shape:?} random"),
                &o,
                17,
                &mut rng,
                slack(area),
            );
        }
    }
}

#[test]
fn pools_with_large_windows() {
    let mut rng = Rng::new(5);
    // Windows of 300x300 (a global pool written as AveragePool, as some exporters do: past
    // 65,535 taps), 40x33 with stride and padding, and 17x17 just past one workgroup's threads.
    let cases: [(Vec<usize>, [i64; 2], [i64; 2], [i64; 4]); 3] = [
        (vec![1, 2, 300, 300], [300, 300], [1, 1], [0, 0, 0, 0]),
        (vec![1, 2, 90, 70], [40, 33], [20, 15], [3, 2, 5, 4]),
        (vec![2, 2, 40, 40], [17, 17], [3, 3], [1, 1, 1, 1]),
    ];
    for (shape, k, s, p) in cases {
        let area = (k[0] * k[1]) as usize;
        for (name, cip) in [("MaxPool", 0), ("AveragePool", 0), ("AveragePool", 1)] {
            let mut attrs = vec![
                Attribute::ints("kernel_shape", &k),
                Attribute::ints("strides", &s),
                Attribute::ints("pads", &p),
            ];
            if name == "AveragePool" {
                attrs.push(Attribute::int("count_include_pad", cip));
            }
            let n: usize = shape.iter().product();
            let plane = shape[2] * shape[3];
            // A ramp within each plane, so a window cut short misses its maximum and mean.
            let ramp: Vec<f32> = (0..n)
                .map(|i| (i % plane) as f32 / plane as f32 + 0.01 * rng.f32())
                .collect();
            let o = op(name, vec![In::Floats(shape.clone(), ramp)]).attrs(attrs);
            check_all_on_gpu_within(
                &format!("{name} {shape:?} kernel {k:?} count_include_pad {cip}"),
                &o,
                17,
                &mut rng,
                slack(area),
            );
        }
    }
}

#[test]
fn products_over_long_k() {
    let mut rng = Rng::new(6);
    // K past one launch's part (4096): MatMul, Gemm with C and transposes, and a convolution
    // whose C x KH x KW is 4608, with bias and a residual.
    for (m, k, n) in [(3, 70_000, 5), (17, 4097, 65), (1, 12_289, 1)] {
        let o = op("MatMul", vec![In::Data(vec![m, k]), In::Data(vec![k, n])]);
        check_all_on_gpu_within(&format!("MatMul {m}x{k}x{n}"), &o, 13, &mut rng, slack(k));
    }
    let o = op(
        "Gemm",
        vec![
            In::Data(vec![9000, 7]),
            In::Weight(vec![6, 9000]),
            In::Weight(vec![6]),
        ],
    )
    .attrs(vec![
        Attribute::int("transA", 1),
        Attribute::int("transB", 1),
        Attribute::float("alpha", 0.5),
        Attribute::float("beta", 2.0),
    ]);
    check_all_on_gpu_within("Gemm K 9000 transposed", &o, 13, &mut rng, slack(9000));
    let o = op(
        "FusedConv",
        vec![
            In::Data(vec![1, 512, 6, 6]),
            In::Weight(vec![20, 512, 3, 3]),
            In::Weight(vec![20]),
            In::Data(vec![1, 20, 4, 4]),
        ],
    )
    .domain("com.microsoft")
    .attrs(vec![Attribute::string("activation", "Relu")]);
    check_all_on_gpu_within("FusedConv K 4608 with Z", &o, 13, &mut rng, slack(4608));
    // Narrow output channels with a long K leave the one-thread kernel for the tile kernel.
    let o = op(
        "Conv",
        vec![
            In::Data(vec![1, 1200, 5, 5]),
            In::Weight(vec![2, 1200, 3, 3]),
        ],
    );
    check_all_on_gpu_within("Conv 1200->2 3x3", &o, 13, &mut rng, slack(10_800));
}

#[test]
fn softmax_over_long_rows() {
    let mut rng = Rng::new(4);
    // (shape, axis, opset): a last axis past one segment, a strided middle axis, and opset
    // 11's flattening of the trailing dims into one long row.
    let cases = [
        (vec![2, 70_000], -1, 13),
        (vec![1, 300], 1, 13),
        (vec![2, 40_000, 2], 1, 13),
        (vec![2, 3, 160, 160], 1, 11),
    ];
    for (shape, axis, opset) in cases {
        for name in ["Softmax", "LogSoftmax"] {
            let what = format!("{name} {shape:?} axis {axis} opset {opset}");
            let o =
                op(name, vec![In::Data(shape.clone())]).attrs(vec![Attribute::int("axis", axis)]);
            check_all_on_gpu(&what, &o, opset, &mut rng);
            // Probabilities of long rows are near 1e-5: compare them relatively as well.
            let (m, feeds) = build(&o, opset, kiln_ir::DataType::F32, &mut rng);
            let gpu = session(
                &m,
                vec![wgpu(Default::default())],
                kiln_runtime::Level::Disabled,
            );
            let cpu = session(&m, vec![], kiln_runtime::Level::Disabled);
            let (g, c) = (
                values(&gpu.run(feeds.clone()).unwrap()),
                values(&cpu.run(feeds).unwrap()),
            );
            for (i, (a, b)) in g[0].1.iter().zip(&c[0].1).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs(),
                    "{what}: [{i}] {a} on the GPU, {b} on the CPU"
                );
            }
        }
    }
}

#[test]
fn softmax_of_fully_masked_rows() {
    // Rows of -FLT_MAX (a causal or padding mask added to every score: GPT-2's first positions
    // under a padding mask) are uniform, not 0/0; rows of -inf are NaN as on the CPU.
    let mut rng = Rng::new(8);
    for len in [12usize, 300, 70_000] {
        let mut v = rng.vec(3 * len);
        v[..len].fill(f32::MIN);
        v[len..2 * len].fill(f32::NEG_INFINITY);
        v[2 * len] = f32::MIN;
        for name in ["Softmax", "LogSoftmax"] {
            let o = op(name, vec![In::Floats(vec![3, len], v.clone())])
                .attrs(vec![Attribute::int("axis", -1)]);
            check_all_on_gpu(&format!("{name} of masked rows of {len}"), &o, 13, &mut rng);
        }
    }
}
