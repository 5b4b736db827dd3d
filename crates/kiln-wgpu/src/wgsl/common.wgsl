// Shared by every kiln kernel: the parameter words (binding 0), the flat index of a
// one-dimensional launch spread over a 2-D grid, and the activations of the fused epilogues.
@group(0) @binding(0) var<storage, read> P: array<u32>;

fn pf(i: u32) -> f32 {
    return bitcast<f32>(P[i]);
}

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + li;
}

fn sigmoid(x: f32) -> f32 {
    // Two branches so that exp never overflows: finite for every x.
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_finite(x: f32) -> f32 {
    // exp(-2|x|) lies in (0, 1], so large |x| gives ±1, never inf/inf.
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}

fn erf_approx(x: f32) -> f32 {
    // Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
        + 0.254829592) * t * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

// Activation and unary codes; kiln-wgpu's `ops::Act` lists the same numbers.
fn act(x: f32, code: u32, a: f32, b: f32) -> f32 {
    var y = x;
    switch code {
        case 1u: { y = max(x, 0.0); }
        case 2u: { y = select(a * x, x, x >= 0.0); }
        case 3u: { y = sigmoid(x); }
        case 4u: { y = tanh_finite(x); }
        case 5u: { y = min(max(x, a), b); }
        case 6u: { y = clamp(a * x + b, 0.0, 1.0); }
        case 7u: { y = x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 8u: { y = x * sigmoid(a * x); }
        case 9u: { y = select(a * (exp(x) - 1.0), x, x >= 0.0); }
        case 10u: { y = b * select(a * (exp(x) - 1.0), x, x > 0.0); }
        case 11u: { y = select(0.0, x, x > a); }
        case 12u: { y = max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case 13u: { y = x / (1.0 + abs(x)); }
        case 14u: { y = exp(x); }
        case 15u: { y = log(x); }
        case 16u: { y = -x; }
        case 17u: { y = abs(x); }
        case 18u: { y = sqrt(x); }
        case 19u: { y = 1.0 / x; }
        case 20u: { y = floor(x); }
        case 21u: { y = ceil(x); }
        case 22u: { y = erf_approx(x); }
        case 23u: { y = 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
        case 24u: { y = sin(x); }
        case 25u: { y = cos(x); }
        case 26u: { y = round(x); }
        case 27u: { y = sign(x); }
        case 28u: { y = x * x; }
        default: {}
    }
    return y;
}
