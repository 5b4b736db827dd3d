//! Einsum, the general case: every label combination is visited once (output labels outer,
//! summed labels inner). Repeated labels in one term take diagonals; `...` stands for the
//! broadcast leading dims; without `->` the output is the ellipsis dims, then the labels used
//! once, in alphabetical order. Floats accumulate in f64; integers wrap in their own type.
use crate::kernel::{one, strides, KernelCtx, KernelFn, Result};
use crate::ops::movement::{check_len, numel};
use crate::ops::num::Num;
use crate::value::{Data, Elem, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "Einsum") => Some(einsum),
        _ => None,
    }
}

/// Label ids: letters are their ASCII code; ellipsis dims count from 256 (outermost first).
const ELLIPSIS: usize = 256;

/// Refuse to visit more label combinations than this.
const MAX_STEPS: usize = 1 << 34;

#[derive(Debug)]
struct Term {
    labels: Vec<char>,
    ellipsis: Option<usize>,
}

fn parse_term(s: &str) -> Result<Term> {
    let mut labels = Vec::new();
    let mut ellipsis = None;
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ellipsis.is_some() {
                return Err(format!("term '{s}' has two ellipses"));
            }
            ellipsis = Some(labels.len());
            rest = r;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if !c.is_ascii_alphabetic() {
            return Err(format!("'{c}' is not a label in term '{s}'"));
        }
        labels.push(c);
        rest = &rest[1..];
    }
    Ok(Term { labels, ellipsis })
}

/// The label ids of a term's dims, given how many dims its ellipsis covers (`ne`, out of
/// `total` ellipsis dims of the whole equation, right-aligned).
fn term_ids(t: &Term, ne: usize, total: usize) -> Vec<usize> {
    let mut ids: Vec<usize> = t.labels.iter().map(|&c| c as usize).collect();
    if let Some(p) = t.ellipsis {
        let e: Vec<usize> = (total - ne..total).map(|k| ELLIPSIS + k).collect();
        ids.splice(p..p, e);
    }
    ids
}

struct Plan {
    /// Output shape.
    out: Vec<usize>,
    /// Sizes of the summed labels.
    sum: Vec<usize>,
    /// Per input: strides along the output labels, then along the summed labels.
    out_st: Vec<Vec<usize>>,
    sum_st: Vec<Vec<usize>>,
}

fn plan(eq: &str, shapes: &[&[usize]]) -> Result<Plan> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<Term> = lhs.split(',').map(parse_term).collect::<Result<_>>()?;
    if terms.len() != shapes.len() {
        return Err(format!(
            "equation '{eq}' has {} terms for {} inputs",
            terms.len(),
            shapes.len()
        ));
    }
    // Ellipsis dims of each input, and how many the equation has in all.
    let mut nes = Vec::with_capacity(terms.len());
    for (t, s) in terms.iter().zip(shapes) {
        let ne = match t.ellipsis {
            Some(_) if s.len() >= t.labels.len() => s.len() - t.labels.len(),
            None if s.len() == t.labels.len() => 0,
            _ => {
                return Err(format!(
                    "term '{}' does not fit an input of rank {}",
                    t.labels.iter().collect::<String>(),
                    s.len()
                ))
            }
        };
        nes.push(ne);
    }
    let total = nes.iter().copied().max().unwrap_or(0);
    // Sizes per label id (ellipsis dims broadcast; a size 1 stretches).
    let mut size: std::collections::BTreeMap<usize, usize> = Default::default();
    let mut count: std::collections::BTreeMap<usize, usize> = Default::default();
    let ids: Vec<Vec<usize>> = terms
        .iter()
        .zip(&nes)
        .map(|(t, &ne)| term_ids(t, ne, total))
        .collect();
    for (term, s) in ids.iter().zip(shapes) {
        for (&id, &d) in term.iter().zip(s.iter()) {
            *count.entry(id).or_default() += 1;
            match size.get(&id) {
                Some(&e) if e != d && e != 1 && d != 1 => {
                    return Err(format!("label dims disagree: {e} and {d}"));
                }
                Some(&e) if e != 1 => {}
                _ => {
                    size.insert(id, d);
                }
            }
        }
    }
    let out_ids: Vec<usize> = match rhs {
        Some(r) => {
            let t = parse_term(r)?;
            // Ellipsis dims left out of an explicit output are summed.
            let o = term_ids(&t, if t.ellipsis.is_some() { total } else { 0 }, total);
            for (i, id) in o.iter().enumerate() {
                if o[..i].contains(id) {
                    return Err(format!("output '{r}' repeats a label"));
                }
                if !size.contains_key(id) {
                    return Err(format!(
                        "output label '{}' is not in any input",
                        (*id as u8) as char
                    ));
                }
            }
            o
        }
        None => {
            let mut o: Vec<usize> = (0..total).map(|k| ELLIPSIS + k).collect();
            o.extend(
                count
                    .iter()
                    .filter(|(&id, &c)| id < ELLIPSIS && c == 1)
                    .map(|(&id, _)| id),
            );
            o
        }
    };
    let sum_ids: Vec<usize> = size
        .keys()
        .copied()
        .filter(|id| !out_ids.contains(id))
        .collect();
    let per_input = |want: &[usize]| -> Vec<Vec<usize>> {
        ids.iter()
            .zip(shapes)
            .map(|(term, s)| {
                let st = strides(s);
                want.iter()
                    .map(|w| {
                        term.iter()
                            .enumerate()
                            .filter(|(k, id)| *id == w && s[*k] != 1)
                            .map(|(k, _)| st[k])
                            .sum()
                    })
                    .collect()
            })
            .collect()
    };
    Ok(Plan {
        out: out_ids.iter().map(|id| size[id]).collect(),
        sum: sum_ids.iter().map(|id| size[id]).collect(),
        out_st: per_input(&out_ids),
        sum_st: per_input(&sum_ids),
    })
}

/// Walks every combination of `dims` (row-major), keeping each input's offset along
/// (`st[input][dim]`), and calls `f` with the offsets.
fn walk(dims: &[usize], st: &[Vec<usize>], mut f: impl FnMut(&[usize])) {
    if dims.contains(&0) {
        return;
    }
    let mut c = vec![0usize; dims.len()];
    let mut off = vec![0usize; st.len()];
    loop {
        f(&off);
        let mut d = dims.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            c[d] += 1;
            for (o, s) in off.iter_mut().zip(st) {
                *o += s[d];
            }
            if c[d] < dims[d] {
                break;
            }
            for (o, s) in off.iter_mut().zip(st) {
                *o -= s[d] * dims[d];
            }
            c[d] = 0;
        }
    }
}

fn run_typed<T: Num>(inputs: &[&[T]], p: &Plan) -> Vec<T> {
    let mut out = Vec::with_capacity(p.out.iter().product());
    walk(&p.out, &p.out_st, |o| {
        if T::IS_FLOAT {
            let mut acc = 0.0f64;
            walk(&p.sum, &p.sum_st, |s| {
                let mut prod = 1.0f64;
                for (k, v) in inputs.iter().enumerate() {
                    prod *= v[o[k] + s[k]].to_f64();
                }
                acc += prod;
            });
            out.push(T::from_f64(acc));
        } else {
            let mut acc = T::zero();
            walk(&p.sum, &p.sum_st, |s| {
                let mut prod = T::one();
                for (k, v) in inputs.iter().enumerate() {
                    prod = prod.mul(v[o[k] + s[k]]);
                }
                acc = acc.add(prod);
            });
            out.push(acc);
        }
    });
    out
}

macro_rules! einsum_types {
    ($ts:expr, $p:expr, $($variant:ident),*) => {
        match &$ts[0].data {
            $(Data::$variant(_) => {
                let mut vs = Vec::with_capacity($ts.len());
                for t in $ts.iter() {
                    match &t.data {
                        Data::$variant(v) => vs.push(v.as_slice()),
                        d => return Err(format!("Einsum inputs must share one type, got {} and {}", $ts[0].dtype(), d.dtype())),
                    }
                }
                Elem::wrap(run_typed(&vs, $p))
            })*
            d => return Err(format!("Einsum does not take {} tensors", d.dtype())),
        }
    };
}

fn einsum(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let eq = ctx.str_attr("equation").ok_or("Einsum needs an equation")?;
    let ts: Vec<&Tensor> = (0..ctx.inputs.len())
        .map(|i| ctx.tensor(i))
        .collect::<Result<_>>()?;
    if ts.is_empty() {
        return Err("Einsum needs at least one input".into());
    }
    for t in &ts {
        check_len(t, "input")?;
    }
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape.as_slice()).collect();
    let p = plan(eq, &shapes)?;
    let n_out = numel(&p.out)?;
    let steps = p.sum.iter().try_fold(n_out, |a, &d| a.checked_mul(d));
    if steps.is_none_or(|s| s > MAX_STEPS) {
        return Err(format!(
            "Einsum '{eq}' is too large for the reference kernel"
        ));
    }
    let data = einsum_types!(ts, &p, F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64);
    one(Tensor::new(p.out.clone(), data))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, iota, run, vals};
    use kiln_ir::Attribute;

    fn eq(e: &str) -> [Attribute; 1] {
        [Attribute::string("equation", e)]
    }

    #[test]
    fn matmul_transpose_and_trace() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        let r = run("Einsum", &eq("ij,jk->ik"), &[a.clone(), b]).unwrap();
        assert_eq!(
            (r.shape.clone(), vals(&r)),
            (vec![2, 2], vec![10.0, 13.0, 28.0, 40.0])
        );
        let r = run("Einsum", &eq("ij -> ji"), &[a.clone()]).unwrap();
        assert_eq!(vals(&r), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let r = run("Einsum", &eq("ii"), &[iota(&[3, 3])]).unwrap();
        assert_eq!((r.shape.clone(), vals(&r)), (vec![], vec![12.0]));
        let r = run("Einsum", &eq("...ii->...i"), &[iota(&[2, 2, 2])]).unwrap();
        assert_eq!(vals(&r), vec![0.0, 3.0, 4.0, 7.0]);
        // Implicit output: labels used once, alphabetically.
        let r = run("Einsum", &eq("ba"), &[a.clone()]).unwrap();
        assert_eq!(r.shape, vec![3, 2]);
        let r = run(
            "Einsum",
            &eq("i,i"),
            &[f32s(&[2], &[1.0, 2.0]), f32s(&[2], &[3.0, 4.0])],
        )
        .unwrap();
        assert_eq!(vals(&r), vec![11.0]);
        assert!(run("Einsum", &eq("ij,jk->ik"), &[a.clone(), a]).is_err());
    }
}
