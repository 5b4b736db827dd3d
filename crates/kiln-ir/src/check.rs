//! `check_consistency`: verifies every invariant the mutation API promises. Tests and debug
//! builds run it after each rewrite.
use std::collections::HashSet;

use crate::graph::{Slot, Use};
use crate::{Graph, IrError, NodeId};

impl Graph {
    /// Checks producers, consumers, the topological order, name uniqueness and that every value
    /// read has a source (a producer, an initializer, a graph input, or an enclosing graph).
    /// Recurses into subgraphs.
    pub fn check_consistency(&self) -> Result<(), IrError> {
        let bad = |s: String| Err(IrError::Inconsistent(format!("graph '{}': {s}", self.name)));
        let live: Vec<NodeId> = (0..u32::MAX)
            .map(NodeId)
            .take_while(|id| (id.0 as usize) < self.node_slots())
            .filter(|id| self.contains_node(*id))
            .collect();
        if live.len() != self.order().len() {
            return bad(format!(
                "{} live nodes but {} in the order",
                live.len(),
                self.order().len()
            ));
        }
        let mut placed = HashSet::new();
        for &id in self.order() {
            if placed.contains(&id) {
                return bad(format!("{} is twice in the order", self.describe(id)));
            }
            let node = self.node(id);
            let reads = node
                .inputs()
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (v, Slot::Input(i))))
                .chain(
                    node.implicit_inputs()
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (*v, Slot::Implicit(i))),
                );
            for (v, slot) in reads {
                if !self.value_is_live(v) {
                    return bad(format!("{} reads a removed value", self.describe(id)));
                }
                let val = self.value(v);
                if !val.consumers().contains(&Use { node: id, slot }) {
                    return bad(format!(
                        "{} reads '{}' but is not among its consumers",
                        self.describe(id),
                        val.name
                    ));
                }
                match val.producer() {
                    Some((p, _)) => {
                        if !placed.contains(&p) {
                            return bad(format!(
                                "{} comes before the producer of '{}'",
                                self.describe(id),
                                val.name
                            ));
                        }
                    }
                    None => {
                        if !self.has_source(v) {
                            return bad(format!(
                                "{} reads '{}', which nothing defines",
                                self.describe(id),
                                val.name
                            ));
                        }
                    }
                }
            }
            placed.insert(id);
            for (i, v) in node.outputs().iter().enumerate() {
                let Some(v) = v else { continue };
                if !self.value_is_live(*v) {
                    return bad(format!("{} writes a removed value", self.describe(id)));
                }
                if self.value(*v).producer() != Some((id, i)) {
                    return bad(format!(
                        "'{}' does not name {} as its producer",
                        self.value(*v).name,
                        self.describe(id)
                    ));
                }
            }
            for g in node.subgraphs() {
                g.check_consistency()?;
            }
        }
        for (id, val) in self.values() {
            if self.find_value(&val.name) != Some(id) {
                return bad(format!("value '{}' is not found by its name", val.name));
            }
            if let Some((p, i)) = val.producer() {
                if !self.contains_node(p) || self.node(p).output(i) != Some(id) {
                    return bad(format!(
                        "'{}' names a producer that does not write it",
                        val.name
                    ));
                }
                if val.initializer.is_some() {
                    return bad(format!(
                        "'{}' is both an initializer and a node output",
                        val.name
                    ));
                }
            }
            let mut seen = HashSet::new();
            for u in val.consumers() {
                if !seen.insert(*u) {
                    return bad(format!("'{}' lists a consumer twice", val.name));
                }
                let reads = self.contains_node(u.node)
                    && match u.slot {
                        Slot::Input(i) => self.node(u.node).input(i) == Some(id),
                        Slot::Implicit(i) => {
                            self.node(u.node).implicit_inputs().get(i) == Some(&id)
                        }
                    };
                if !reads {
                    return bad(format!(
                        "'{}' lists a consumer that does not read it",
                        val.name
                    ));
                }
            }
        }
        for &o in self.outputs() {
            if !self.value_is_live(o) {
                return bad("a graph output is a removed value".into());
            }
            if self.value(o).producer().is_none() && !self.has_source(o) {
                return bad(format!(
                    "graph output '{}' is never computed",
                    self.value(o).name
                ));
            }
        }
        for &i in self.inputs() {
            if !self.value_is_live(i) {
                return bad("a graph input is a removed value".into());
            }
            if self.value(i).producer().is_some() {
                return bad(format!(
                    "graph input '{}' is also a node output",
                    self.value(i).name
                ));
            }
        }
        Ok(())
    }

    fn has_source(&self, v: crate::ValueId) -> bool {
        let val = self.value(v);
        val.initializer.is_some()
            || val.sparse_initializer.is_some()
            || val.outer
            || self.inputs().contains(&v)
    }
}
