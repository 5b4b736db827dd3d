//! `ai.onnx.ml`: the classical machine-learning operators that skl2onnx and onnxmltools
//! write: encoders, scalers, linear models, SVMs and tree ensembles.
use kiln_ir::{AttrValue, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::ops::InferFn;

mod encoders;
mod forest;
mod label_encoder;
mod linear;
mod simple;
mod svm;
mod tree_ensemble;
mod tree_legacy;

pub const DOMAIN: &str = "ai.onnx.ml";

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if domain != DOMAIN {
        return None;
    }
    Some(match op_type {
        "LabelEncoder" => label_encoder::run,
        "TreeEnsemble" => tree_ensemble::run,
        "Binarizer" => simple::binarizer,
        "ArrayFeatureExtractor" => simple::array_feature_extractor,
        "Scaler" => simple::scaler,
        "Normalizer" => simple::normalizer,
        "OneHotEncoder" => encoders::one_hot,
        "CategoryMapper" => encoders::category_mapper,
        "Imputer" => encoders::imputer,
        "FeatureVectorizer" => encoders::feature_vectorizer,
        "ZipMap" => encoders::zip_map,
        "LinearClassifier" => linear::classifier,
        "LinearRegressor" => linear::regressor,
        "SVMClassifier" => svm::classifier,
        "SVMRegressor" => svm::regressor,
        "TreeEnsembleClassifier" => tree_legacy::classifier,
        "TreeEnsembleRegressor" => tree_legacy::regressor,
        _ => return None,
    })
}

/// The inference rules of this module's ops.
pub fn infer_rule(op_type: &str) -> Option<InferFn> {
    Some(match op_type {
        "LabelEncoder" => label_encoder::infer,
        "TreeEnsemble" => tree_ensemble::infer,
        "Binarizer" => same,
        "ArrayFeatureExtractor" => simple::infer_array_feature_extractor,
        "Scaler" | "Normalizer" => simple::infer_float_like,
        "OneHotEncoder" => encoders::infer_one_hot,
        "CategoryMapper" => encoders::infer_category_mapper,
        "Imputer" => same,
        "FeatureVectorizer" => encoders::infer_feature_vectorizer,
        "ZipMap" => encoders::infer_zip_map,
        "LinearClassifier" => linear::infer_classifier,
        "LinearRegressor" => linear::infer_regressor,
        "SVMClassifier" => svm::infer_classifier,
        "SVMRegressor" => svm::infer_regressor,
        "TreeEnsembleClassifier" => tree_legacy::infer_classifier,
        "TreeEnsembleRegressor" => tree_legacy::infer_regressor,
        _ => return None,
    })
}

fn same(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

/// A strings attribute as UTF-8 (lossy).
fn strings_attr(ctx: &KernelCtx, name: &str) -> Option<Vec<String>> {
    match ctx.attr(name) {
        Some(AttrValue::Strings(v)) => Some(
            v.iter()
                .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// The row count of an `[N, F]` X (a 1-D X is one row).
fn rows_dim(ctx: &InferCtx) -> Dim {
    ctx.shape(0)
        .map(|s| {
            if s.len() <= 1 {
                Dim::Known(1)
            } else {
                s[0].clone()
            }
        })
        .unwrap_or(Dim::Unknown)
}

/// A classifier's two outputs: labels `[N]` (string or int64 by the class labels given, the
/// integer form named `ints`) and scores `[N, width(label count)]`.
fn classifier_types(
    ctx: &InferCtx,
    ints: &str,
    width: impl Fn(usize) -> Dim,
) -> Result<Vec<Inferred>> {
    let (dt, c) = match (ctx.attr("classlabels_strings"), ctx.attr(ints)) {
        (Some(AttrValue::Strings(s)), _) => (DataType::String, s.len()),
        (_, Some(AttrValue::Ints(i))) => (DataType::I64, i.len()),
        _ => (DataType::I64, 0),
    };
    let n = rows_dim(ctx);
    Ok(vec![
        Inferred::tensor(Some(dt), Some(vec![n.clone()])),
        Inferred::tensor(Some(DataType::F32), Some(vec![n, width(c)])),
    ])
}

#[cfg(test)]
mod tests {
    //! Malformed attributes give errors, never panics or absurd allocations.
    use kiln_ir::Attribute;

    use crate::ops::movement::testing::{f32s, run_domain};

    fn run(op: &str, attrs: &[Attribute], x: &[usize]) -> crate::ctx::Result<crate::Tensor> {
        let n: usize = x.iter().product();
        run_domain(super::DOMAIN, op, 3, &[f32s(x, &vec![0.5; n])], attrs)
    }

    #[test]
    fn absurd_sizes_are_errors() {
        let big = 1i64 << 62;
        let cases: Vec<(&str, Vec<Attribute>, Vec<usize>)> = vec![
            (
                "LinearRegressor",
                vec![
                    Attribute::int("targets", big),
                    Attribute::floats("coefficients", &[1.0; 4]),
                ],
                vec![1, 4],
            ),
            (
                "SVMClassifier",
                vec![
                    Attribute::ints("vectors_per_class", &[big, big, 1]),
                    Attribute::ints("classlabels_ints", &[0, 1, 2]),
                    Attribute::floats("coefficients", &[1.0]),
                    Attribute::floats("rho", &[0.0; 3]),
                ],
                vec![1, 4],
            ),
            (
                "SVMRegressor",
                vec![
                    Attribute::int("n_supports", big),
                    Attribute::floats("coefficients", &[1.0]),
                    Attribute::floats("rho", &[0.0]),
                ],
                vec![1, 4],
            ),
            (
                "TreeEnsembleRegressor",
                vec![
                    Attribute::int("n_targets", big),
                    Attribute::strings("nodes_modes", &["LEAF"]),
                    Attribute::ints("nodes_treeids", &[0]),
                    Attribute::ints("nodes_nodeids", &[0]),
                    Attribute::ints("nodes_featureids", &[0]),
                    Attribute::floats("nodes_values", &[0.0]),
                    Attribute::ints("nodes_truenodeids", &[0]),
                    Attribute::ints("nodes_falsenodeids", &[0]),
                ],
                vec![1, 1],
            ),
            (
                "FeatureVectorizer",
                vec![Attribute::ints("inputdimensions", &[big])],
                vec![1, 1],
            ),
            (
                "SVMRegressor",
                vec![
                    Attribute::floats("coefficients", &[]),
                    Attribute::floats("rho", &[0.0]),
                ],
                vec![3, 0],
            ),
        ];
        for (op, attrs, x) in cases {
            assert!(run(op, &attrs, &x).is_err(), "{op} accepted {attrs:?}");
        }
    }

    #[test]
    fn tree_links_outside_the_tree_are_errors() {
        let attrs = [
            Attribute::int("n_targets", 1),
            Attribute::strings("nodes_modes", &["BRANCH_LEQ", "LEAF"]),
            Attribute::ints("nodes_treeids", &[0, 0]),
            Attribute::ints("nodes_nodeids", &[0, 1]),
            Attribute::ints("nodes_featureids", &[0, 0]),
            Attribute::floats("nodes_values", &[0.0, 0.0]),
            Attribute::ints("nodes_truenodeids", &[1, 0]),
            Attribute::ints("nodes_falsenodeids", &[7, 0]),
        ];
        let err = run("TreeEnsembleRegressor", &attrs, &[2, 1]).unwrap_err();
        assert!(err.contains("no node 7"), "{err}");
    }
}
