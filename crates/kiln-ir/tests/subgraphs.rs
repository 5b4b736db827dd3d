//! Subgraphs: values a branch reads from the enclosing graph become implicit inputs of the
//! owning node, so ordering and dead-node removal see them, and saving writes the bodies back.
use kiln_ir::{AttrValue, Model};
use kiln_onnx::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TypeProto, ValueInfoProto,
};

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn vi(name: &str, elem: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: None,
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn branch(name: &str, op: &str, reads: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(GraphProto {
            name: Some(name.into()),
            node: vec![node(op, &[reads], &[&format!("{name}_out")])],
            output: vec![vi(&format!("{name}_out"), 1)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// cond, x -> Relu(x) = r; If(cond) { then: Neg(r) } else { Abs(r) } = y.
/// The If is listed before the Relu it depends on, through its branches only.
fn model() -> ModelProto {
    let mut if_node = node("If", &["cond"], &["y"]);
    if_node.attribute = vec![
        branch("then_branch", "Neg", "r"),
        branch("else_branch", "Abs", "r"),
    ];
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![if_node, node("Relu", &["x"], &["r"])],
            input: vec![vi("cond", 9), vi("x", 1)],
            output: vec![vi("y", 1)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn outer_values_are_implicit_inputs() {
    let mut m = Model::from_proto(&model()).unwrap();
    let g = &mut m.graph;
    g.check_consistency().unwrap();
    let order: Vec<&str> = g.nodes().map(|(_, n)| n.op_type.as_str()).collect();
    assert_eq!(
        order,
        ["Relu", "If"],
        "the branch's read orders the Relu first"
    );
    let (_, if_node) = g.nodes().find(|(_, n)| n.op_type == "If").unwrap();
    let r = g.find_value("r").unwrap();
    assert_eq!(if_node.implicit_inputs(), &[r]);
    let AttrValue::Graph(body) = &if_node.attrs[0].value else {
        panic!("then_branch is a graph")
    };
    let inner_r = body.find_value("r").unwrap();
    assert!(body.value(inner_r).outer);
    // The Relu is used only through the branches, and stays.
    assert_eq!(g.remove_dead(), (0, 0));
    assert_eq!(g.node_count(), 2);
    // Removing the Relu while the If reads it is refused.
    let relu = g.value(r).producer().unwrap().0;
    assert!(g.remove_node(relu).is_err());
    // Saved and loaded again: same structure.
    let back = Model::from_proto(&m.to_proto()).unwrap();
    back.graph.check_consistency().unwrap();
    assert_eq!(back.graph.node_count(), 2);
}

#[test]
fn a_branch_reading_an_undefined_name_is_an_error() {
    let mut p = model();
    let g = p.graph.as_mut().unwrap();
    g.node[0].attribute[1].g.as_mut().unwrap().node[0].input[0] = "nowhere".into();
    let err = Model::from_proto(&p).unwrap_err().to_string();
    assert!(err.contains("'nowhere'") && err.contains("(Abs)"), "{err}");
}
