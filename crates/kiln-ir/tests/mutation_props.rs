//! Property tests of the mutation API: random sequences of rewrites on random graphs leave the
//! graph consistent (producers, consumers, order, names), and refused rewrites change nothing.
use kiln_ir::{Graph, Node, NodeId, ValueId};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    /// Add a node reading two existing values (by index modulo the live values).
    Add(usize, usize),
    /// Rewire input 0 of a node to some value.
    SetInput(usize, usize),
    /// Replace all uses of one value with another.
    Replace(usize, usize),
    /// Remove a node, after first pointing its outputs' readers at the node's first input.
    Bypass(usize),
    /// Detach a node and re-add an equivalent one producing the same values.
    Reinsert(usize),
    RemoveDead,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Step::Add(a, b)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Step::SetInput(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Step::Replace(a, b)),
        2 => any::<usize>().prop_map(Step::Bypass),
        1 => any::<usize>().prop_map(Step::Reinsert),
        1 => Just(Step::RemoveDead),
    ]
}

/// Values something defines (a producer or a graph input): the ones a rewrite may read.
fn live_values(g: &Graph) -> Vec<ValueId> {
    g.values()
        .filter(|(id, v)| v.producer().is_some() || g.inputs().contains(id))
        .map(|(id, _)| id)
        .collect()
}

fn live_nodes(g: &Graph) -> Vec<NodeId> {
    g.order().to_vec()
}

fn apply(g: &mut Graph, step: &Step, counter: &mut usize) {
    let vals = live_values(g);
    let nodes = live_nodes(g);
    match *step {
        Step::Add(a, b) => {
            let (x, y) = (vals[a % vals.len()], vals[b % vals.len()]);
            *counter += 1;
            let out = g.add_value(&format!("v{counter}"), None).unwrap();
            let n = Node::new(&format!("n{counter}"), "Add", "")
                .with_inputs(&[Some(x), Some(y)])
                .with_outputs(&[Some(out)]);
            g.add_node(n).unwrap();
        }
        Step::SetInput(n, v) if !nodes.is_empty() => {
            let node = nodes[n % nodes.len()];
            let v = vals[v % vals.len()];
            let before_input = g.node(node).input(0);
            let before_order = g.order().to_vec();
            // Creating a cycle must be refused, leaving the graph as it was.
            if g.set_input(node, 0, Some(v)).is_err() {
                assert_eq!(g.node(node).input(0), before_input);
                assert_eq!(g.order(), &before_order[..]);
            }
        }
        Step::Replace(a, b) => {
            let (old, new) = (vals[a % vals.len()], vals[b % vals.len()]);
            let users = g.value(old).consumers().len();
            if g.replace_uses(old, new, false).is_err() {
                assert_eq!(g.value(old).consumers().len(), users, "refused: unchanged");
            }
        }
        Step::Bypass(n) if !nodes.is_empty() => {
            let node = nodes[n % nodes.len()];
            let src = g.node(node).input(0).unwrap();
            let out = g.node(node).output(0).unwrap();
            if g.is_graph_output(out) {
                assert!(g.remove_node(node).is_err(), "graph outputs stay produced");
                return;
            }
            g.replace_uses(out, src, false).unwrap();
            g.remove_node(node).unwrap();
        }
        Step::Reinsert(n) if !nodes.is_empty() => {
            let node = nodes[n % nodes.len()];
            let old = g.detach_node(node);
            let again = Node::new(&old.name, &old.op_type, "")
                .with_inputs(old.inputs())
                .with_outputs(old.outputs());
            g.add_node(again).unwrap();
        }
        Step::RemoveDead => {
            g.remove_dead();
        }
        _ => {}
    }
}

fn start_graph() -> Graph {
    let mut g = Graph::new("g");
    let a = g.add_value("a", None).unwrap();
    let b = g.add_value("b", None).unwrap();
    g.push_input(a);
    g.push_input(b);
    let o = g.add_value("o", None).unwrap();
    g.add_node(
        Node::new("first", "Add", "")
            .with_inputs(&[Some(a), Some(b)])
            .with_outputs(&[Some(o)]),
    )
    .unwrap();
    g.set_outputs(vec![o]);
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_rewrites_keep_the_graph_consistent(steps in prop::collection::vec(arb_step(), 1..60)) {
        let mut g = start_graph();
        let mut counter = 0;
        for s in &steps {
            apply(&mut g, s, &mut counter);
            prop_assert!(g.check_consistency().is_ok(), "after {:?}: {:?}", s, g.check_consistency());
        }
    }
}

#[test]
fn refused_rewrites_leave_the_graph_unchanged() {
    let mut g = start_graph();
    let o = g.find_value("o").unwrap();
    let a = g.find_value("a").unwrap();
    // A second producer of `o`.
    let n = Node::new("dup", "Relu", "")
        .with_inputs(&[Some(a)])
        .with_outputs(&[Some(o)]);
    assert!(g.add_node(n).is_err());
    // A graph input cannot be produced by a node.
    let n = Node::new("dup", "Relu", "")
        .with_inputs(&[Some(o)])
        .with_outputs(&[Some(a)]);
    assert!(g.add_node(n).is_err());
    assert_eq!(g.node_count(), 1);
    g.check_consistency().unwrap();
    // Removing a node whose output is a graph output is refused.
    let first = g.order()[0];
    assert!(g.remove_node(first).is_err());
    g.check_consistency().unwrap();
}

#[test]
fn cycles_are_refused_by_name() {
    let mut g = start_graph();
    let o = g.find_value("o").unwrap();
    let first = g.order()[0];
    let p = g.add_value("p", None).unwrap();
    g.add_node(
        Node::new("second", "Relu", "")
            .with_inputs(&[Some(o)])
            .with_outputs(&[Some(p)]),
    )
    .unwrap();
    let err = g.set_input(first, 0, Some(p)).unwrap_err().to_string();
    assert!(err.contains("cycle"), "{err}");
}
