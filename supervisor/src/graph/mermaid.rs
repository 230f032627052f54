//! A plan as a Mermaid flowchart (`flw graph`).

use std::fmt::Write;

use flw_protocol::NodeKind;

use super::plan::{Plan, Step};

/// The flowchart of `plan`: one box per entry (batch nodes as subroutine
/// boxes, parallel entries as hexagons with dotted lines to their
/// branches), nested flows as subgraphs, edges labelled with their action
/// (`default` edges unlabelled).
pub fn render(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(
        out,
        "    start_(( )) --> {}",
        id(plan.name.as_str(), plan.start, plan)
    );
    draw(plan, &plan.name, &mut out, 1);
    out
}

/// Mermaid id of entry `i` of `plan` drawn under `prefix`.
fn id(prefix: &str, i: usize, plan: &Plan) -> String {
    sanitize(&format!("{prefix}__{}", plan.nodes[i].id))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn label(text: &str) -> String {
    text.replace('"', "#quot;")
}

fn draw(plan: &Plan, prefix: &str, out: &mut String, depth: usize) {
    let pad = "    ".repeat(depth);
    for (i, node) in plan.nodes.iter().enumerate() {
        let me = id(prefix, i, plan);
        match &node.step {
            Step::Worker(w) => {
                let text = if w.name == node.id {
                    node.id.clone()
                } else {
                    format!("{} ({})", node.id, w.name)
                };
                let text = label(&format!("{text}<br/><small>{}</small>", w.pool_name));
                match w.kind {
                    NodeKind::Node => {
                        let _ = writeln!(out, "{pad}{me}[\"{text}\"]");
                    }
                    NodeKind::Batch => {
                        let _ = writeln!(out, "{pad}{me}[[\"{text} · batch\"]]");
                    }
                }
            }
            Step::Flow(sub) => {
                let _ = writeln!(
                    out,
                    "{pad}subgraph {me}[\"{}\"]",
                    label(&format!("{} (flow {})", node.id, sub.name))
                );
                let _ = writeln!(out, "{pad}    direction TB");
                draw(sub, &me, out, depth + 1);
                let _ = writeln!(out, "{pad}end");
            }
            Step::Parallel(branches) => {
                let _ = writeln!(out, "{pad}{me}{{{{\"{} · parallel\"}}}}", label(&node.id));
                for &b in branches {
                    let _ = writeln!(out, "{pad}{me} -.-> {}", id(prefix, b, plan));
                }
            }
        }
    }
    for (i, node) in plan.nodes.iter().enumerate() {
        for (action, to) in &node.next {
            let from = id(prefix, i, plan);
            let to = id(prefix, *to, plan);
            if action == "default" {
                let _ = writeln!(out, "{pad}{from} --> {to}");
            } else {
                let _ = writeln!(out, "{pad}{from} -- \"{}\" --> {to}", label(action));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Catalog, Document};
    use flw_protocol::NodeSpec;
    use serde_json::json;

    #[test]
    fn draws_nodes_edges_subflows_and_parallel() {
        let spec = |n: &str, kind| NodeSpec {
            name: n.into(),
            kind,
            description: String::new(),
            fallback: false,
        };
        let mut c = Catalog::default();
        c.pools.push((
            "py".into(),
            vec![spec("decide", NodeKind::Node), spec("map", NodeKind::Batch)],
        ));
        let doc = Document::parse(
            &json!({"name": "agent", "start": "decide", "nodes": {
                "decide": {"node": "decide"},
                "fan": {"parallel": ["m"]},
                "m": {"node": "map"},
                "sub": {"flow": {"name": "inner", "start": "d", "nodes": {"d": {"node": "decide"}}}}},
                "edges": [{"from": "decide", "to": "fan", "action": "go"}, {"from": "fan", "to": "sub"}]}),
            "t",
        )
        .unwrap();
        c.flows.insert("agent".into(), (doc, None));
        let text = render(&c.plan("agent").unwrap());
        for want in [
            "flowchart TD",
            "start_(( )) --> agent__decide",
            "agent__decide[\"decide<br/><small>py</small>\"]",
            "agent__m[[\"m (map)<br/><small>py</small> · batch\"]]",
            "agent__fan{{\"fan · parallel\"}}",
            "agent__fan -.-> agent__m",
            "subgraph agent__sub[\"sub (flow inner)\"]",
            "agent__sub__d[\"d (decide)",
            "agent__decide -- \"go\" --> agent__fan",
            "agent__fan --> agent__sub",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
