//! A whole model: the main graph plus the model-level fields of `ModelProto` (opset imports,
//! producer, metadata; functions and training info are carried through unchanged).
use std::path::Path;

use kiln_onnx::proto::{self, ModelProto, OperatorSetIdProto};

use crate::export::export_graph;
use crate::import::import_graph;
use crate::{Graph, IrError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetImport {
    /// `""` for the default ONNX domain (the file may say `ai.onnx`; kiln normalizes).
    pub domain: String,
    pub version: i64,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub ir_version: i64,
    pub opsets: Vec<OpsetImport>,
    pub producer_name: Option<String>,
    pub producer_version: Option<String>,
    pub domain: Option<String>,
    pub model_version: Option<i64>,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<proto::StringStringEntryProto>,
    pub graph: Graph,
    pub functions: Vec<proto::FunctionProto>,
    pub training_info: Vec<proto::TrainingInfoProto>,
    pub configuration: Vec<proto::DeviceConfigurationProto>,
}

fn normal_domain(d: &str) -> &str {
    if d == "ai.onnx" {
        ""
    } else {
        d
    }
}

impl Model {
    /// A model of `graph` at IR version 8 importing `opsets` (domain, version), with no
    /// metadata: what a test or a tool that builds a graph in code saves or runs.
    pub fn new(graph: Graph, opsets: &[(&str, i64)]) -> Model {
        Model {
            ir_version: 8,
            opsets: opsets
                .iter()
                .map(|&(d, version)| OpsetImport {
                    domain: normal_domain(d).to_string(),
                    version,
                })
                .collect(),
            producer_name: None,
            producer_version: None,
            domain: None,
            model_version: None,
            doc_string: None,
            metadata_props: vec![],
            graph,
            functions: vec![],
            training_info: vec![],
            configuration: vec![],
        }
    }

    /// Reads a model file (external data from its folder) and checks its graph.
    pub fn load(path: &Path) -> Result<Model, IrError> {
        Model::from_proto(&kiln_onnx::load_model(path)?)
    }

    /// Decodes a model from bytes. External data cannot be resolved without a folder and is an
    /// error if present.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, IrError> {
        Model::from_proto(&kiln_onnx::decode_model(bytes)?)
    }

    pub fn from_proto(p: &ModelProto) -> Result<Model, IrError> {
        let gp = p.graph.as_ref().ok_or(kiln_onnx::FormatError::NoGraph)?;
        let mut opsets: Vec<OpsetImport> = Vec::new();
        for o in &p.opset_import {
            let domain = normal_domain(o.domain.as_deref().unwrap_or("")).to_string();
            let version = o.version.unwrap_or(0);
            // The same import twice (skl2onnx writes that, and `""` and `ai.onnx` name one
            // domain) is one import; two versions of one domain are a contradiction.
            if let Some(x) = opsets.iter().find(|x| x.domain == domain) {
                if x.version == version {
                    continue;
                }
                return Err(IrError::BadProto {
                    owner: "model".into(),
                    reason: format!(
                        "opset of domain '{domain}' is imported twice, as versions {} and {version}",
                        x.version
                    ),
                });
            }
            opsets.push(OpsetImport { domain, version });
        }
        let mut graph = import_graph(gp, None, 0)?;
        if p.ir_version.unwrap_or(0) >= 4 {
            graph.make_inputs_overridable();
        }
        Ok(Model {
            ir_version: p.ir_version.unwrap_or(0),
            opsets,
            producer_name: p.producer_name.clone(),
            producer_version: p.producer_version.clone(),
            domain: p.domain.clone(),
            model_version: p.model_version,
            doc_string: p.doc_string.clone(),
            metadata_props: p.metadata_props.clone(),
            graph,
            functions: p.functions.clone(),
            training_info: p.training_info.clone(),
            configuration: p.configuration.clone(),
        })
    }

    pub fn to_proto(&self) -> ModelProto {
        ModelProto {
            ir_version: Some(self.ir_version),
            opset_import: self
                .opsets
                .iter()
                .map(|o| OperatorSetIdProto {
                    domain: Some(o.domain.clone()),
                    version: Some(o.version),
                })
                .collect(),
            producer_name: self.producer_name.clone(),
            producer_version: self.producer_version.clone(),
            domain: self.domain.clone(),
            model_version: self.model_version,
            doc_string: self.doc_string.clone(),
            metadata_props: self.metadata_props.clone(),
            graph: Some(export_graph(&self.graph)),
            functions: self.functions.clone(),
            training_info: self.training_info.clone(),
            configuration: self.configuration.clone(),
        }
    }

    /// Saves the model (atomically; large models get external data beside the file).
    pub fn save(&self, path: &Path) -> Result<(), IrError> {
        Ok(kiln_onnx::save_model(&self.to_proto(), path)?)
    }

    /// The imported version of an operator set domain (`""` or `ai.onnx` for ONNX's own).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let d = normal_domain(domain);
        self.opsets
            .iter()
            .find(|o| o.domain == d)
            .map(|o| o.version)
    }

    /// Imports `domain` at `version` unless it is imported already.
    pub fn ensure_opset(&mut self, domain: &str, version: i64) {
        if self.opset(domain).is_none() {
            self.opsets.push(OpsetImport {
                domain: normal_domain(domain).to_string(),
                version,
            });
        }
    }
}
