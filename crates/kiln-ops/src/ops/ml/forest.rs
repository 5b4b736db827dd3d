//! The decision forest the tree-ensemble ops share: interior nodes comparing one feature with a
//! threshold (or a membership set), leaves holding `(target, weight)` pairs, and the walk from
//! a root to the leaf a row reaches. TreeEnsemble (ml 5) and the legacy
//! TreeEnsembleClassifier/Regressor (ml 1-3) build one from their attributes.
use crate::ctx::Result;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    Node(usize),
    Leaf(usize),
}

/// How an interior node compares its feature `v` with its threshold `t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Member,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub feature: usize,
    pub mode: Mode,
    pub threshold: f64,
    pub on_true: Next,
    pub on_false: Next,
    /// A NaN feature takes the true branch (else every comparison but `!=` is false).
    pub missing_true: bool,
    /// The set of a `Member` node.
    pub set: Vec<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct Forest {
    pub nodes: Vec<Node>,
    /// Each leaf's `(target, weight)` pairs.
    pub leaves: Vec<Vec<(usize, f64)>>,
    pub roots: Vec<Next>,
}

impl Forest {
    /// Checks the links and features once, so that `leaf` cannot index out of bounds.
    pub fn validate(&self, features: usize) -> Result<()> {
        let ok = |n: Next| match n {
            Next::Node(i) => i < self.nodes.len(),
            Next::Leaf(l) => l < self.leaves.len(),
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if !ok(n.on_true) || !ok(n.on_false) {
                return Err(format!("node {i} points outside the tree"));
            }
            if n.feature >= features {
                return Err(format!(
                    "a node reads feature {}, but X has {features} features",
                    n.feature
                ));
            }
        }
        if let Some(r) = self.roots.iter().find(|&&r| !ok(r)) {
            return Err(format!("tree root {r:?} is outside the tree"));
        }
        Ok(())
    }

    /// The leaf that `row` reaches from `root` (a cycle is an error, not a hang).
    pub fn leaf(&self, row: &[f64], root: Next) -> Result<usize> {
        let mut at = root;
        for _ in 0..=self.nodes.len() {
            match at {
                Next::Leaf(l) => return Ok(l),
                Next::Node(i) => {
                    let n = &self.nodes[i];
                    let v = row[n.feature];
                    let t = n.threshold;
                    let go = if v.is_nan() {
                        n.missing_true || n.mode == Mode::Neq
                    } else {
                        match n.mode {
                            Mode::Leq => v <= t,
                            Mode::Lt => v < t,
                            Mode::Gte => v >= t,
                            Mode::Gt => v > t,
                            Mode::Eq => v == t,
                            Mode::Neq => v != t,
                            Mode::Member => n.set.contains(&v),
                        }
                    };
                    at = if go { n.on_true } else { n.on_false };
                }
            }
        }
        Err("a tree has a cycle".into())
    }
}

/// `[N, F]` (or `[F]` as one row) of X.
pub fn rows_of(shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [n, f] => Ok((*n, *f)),
        [f] => Ok((1, *f)),
        s => Err(format!("X must be [N, F], got {s:?}")),
    }
}

/// The legacy string form of a post transform, as ORT's code (0 NONE, 1 LOGISTIC, 2 SOFTMAX,
/// 3 SOFTMAX_ZERO, 4 PROBIT).
pub fn post_transform_code(s: Option<&str>) -> Result<i64> {
    Ok(match s.unwrap_or("NONE") {
        "NONE" => 0,
        "LOGISTIC" => 1,
        "SOFTMAX" => 2,
        "SOFTMAX_ZERO" => 3,
        "PROBIT" => 4,
        other => {
            return Err(format!(
            "post_transform '{other}' is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT"
        ))
        }
    })
}
