//! Fuzzes graph documents: JSON text parsed as a flow (a graph file) or as
//! the list of flows a worker's `hello` declares, then checked into plans
//! against a catalog that has every node the documents name, and drawn.
#![no_main]

use flw::graph::{check_worker_flows, mermaid, Catalog, Document, Target};
use flw_protocol::{NodeKind, NodeSpec};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Every worker node the document names, so that planning goes past the
/// "no pool implements" check; a name starting with `b` is a batch node.
fn nodes_of(doc: &Document, out: &mut Vec<NodeSpec>) {
    for (_, entry) in &doc.nodes {
        match &entry.target {
            Target::Node { name, .. } if !out.iter().any(|n| &n.name == name) => {
                out.push(NodeSpec {
                    name: name.clone(),
                    kind: if name.starts_with('b') {
                        NodeKind::Batch
                    } else {
                        NodeKind::Node
                    },
                    description: String::new(),
                    fallback: name.ends_with('f'),
                })
            }
            Target::FlowInline(sub) => nodes_of(sub, out),
            _ => {}
        }
    }
}

fuzz_target!(|text: &[u8]| {
    // Graph files and hello messages are read with serde_json first.
    let Ok(value) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let docs: Vec<Document> = match &value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| Document::parse(v, "fuzz").ok())
            .collect(),
        v => Document::parse(v, "fuzz").into_iter().collect(),
    };
    if docs.is_empty() {
        return;
    }
    let mut nodes = Vec::new();
    for d in &docs {
        let _ = d.tool_spec();
        nodes_of(d, &mut nodes);
    }
    // As a worker's own flows.
    let _ = check_worker_flows("pool", &nodes, &docs);
    // As graph files, beside a pool that has every node.
    let catalog = Catalog {
        pools: vec![("pool".into(), nodes)],
        flows: docs
            .iter()
            .map(|d| (d.name.clone(), (d.clone(), None)))
            .collect(),
    };
    for (i, d) in docs.iter().enumerate() {
        if let Ok(plan) = catalog.plan(&d.name) {
            // `flw graph` draws one flow; drawing each would only repeat.
            if i == 0 {
                let _ = mermaid::render(&plan);
            }
        }
    }
});
