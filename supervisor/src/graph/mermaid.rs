//! A plan as a Mermaid flowchart (`flw graph`).

use std::fmt::Write;

use flw_protocol::NodeKind;

use super::plan::{Plan, Step};

/// The flowchart of `plan`: one box per entry (batch nodes as subroutine
/// boxes, parallel entries as hexagons with dotted lines to their
/// branches), nested flows as subgraphs, edges labelled with their action
/// (`default` edges unlabelled). A chart stops expanding nested flows at
/// [`MAX_BOXES`] boxes: a flow that many entries reach would otherwise be
/// drawn once per path to it.
pub fn render(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(
        out,
        "    start_(( )) --> {}",
        id(plan.name.as_str(), plan.start, plan)
    );
    let mut budget = MAX_BOXES;
    draw(plan, &plan.name, &mut out, 1, &mut budget);
    out
}

/// Boxes a chart draws before it shows the remaining nested flows as plain
/// boxes (Mermaid itself gives up on much smaller charts).
pub const MAX_BOXES: usize = 1_000;

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

/// Draws `plan`'s entries; `budget` is how many boxes the chart may still
/// take.
fn draw(plan: &Plan, prefix: &str, out: &mut String, depth: usize, budget: &mut usize) {
    let pad = "    ".repeat(depth);
    for (i, node) in plan.nodes.iter().enumerate() {
        let me = id(prefix, i, plan);
        *budget = budget.saturating_sub(1);
        match &node.step {
            Step::Flow(sub) if *budget == 0 => {
                let _ = writeln!(
                    out,
                    "{pad}{me}[\"{}\"]",
                    label(&format!(
                        "{} (flow {}, not drawn: the chart has {MAX_BOXES} boxes)",
                        node.id, sub.name
                    ))
                );
            }
            Step::Worker(w) => {
                let text = if w.name == node.id {
                    node.id.clone()
                } else {
                    format!("{} ({})", node.id, w.name)
                };
                let text = label(&format!("{text}<br/><small>{}</small>", w.pool_name));
                match w.kind {
                    // A batch_flow node is never an entry (the plan refuses it).
                    NodeKind::Node | NodeKind::BatchFlow => {
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
                    label(&match &sub.batch {
                        None => format!("{} (flow {})", node.id, sub.name),
                        Some(b) => format!(
                            "{} (flow {}, once per parameter set of {}{})",
                            node.id,
                            sub.name,
                            b.node.name,
                            if b.concurrent { ", concurrent" } else { "" }
                        ),
                    })
                );
                let _ = writeln!(out, "{pad}    direction TB");
                draw(sub, &me, out, depth + 1, budget);
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

    #[test]
    fn a_flow_reached_by_many_paths_is_drawn_until_the_chart_is_full() {
        // f0 runs f1 twice, f1 runs f2 twice, ... 40 deep: drawing every
        // path took 2^40 boxes.
        let mut c = Catalog::default();
        c.pools.push((
            "py".into(),
            vec![NodeSpec {
                name: "decide".into(),
                kind: NodeKind::Node,
                description: String::new(),
                fallback: false,
            }],
        ));
        let depth = 40;
        for i in 0..=depth {
            let doc = if i == depth {
                json!({"name": format!("f{i}"), "start": "d", "nodes": {"d": {"node": "decide"}}})
            } else {
                let sub = format!("f{}", i + 1);
                json!({"name": format!("f{i}"), "start": "a",
                    "nodes": {"a": {"flow": sub}, "b": {"flow": sub}},
                    "edges": [{"from": "a", "to": "b"}]})
            };
            c.flows
                .insert(format!("f{i}"), (Document::parse(&doc, "t").unwrap(), None));
        }
        let plan = c.plan("f0").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(render(&plan)));
        let text = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the chart did not finish");
        assert!(text.contains("subgraph f0__a[\"a (flow f1)\"]"), "{text}");
        assert!(
            text.contains("not drawn: the chart has 1000 boxes"),
            "{text}"
        );
        assert!(
            text.lines().count() < 4 * MAX_BOXES,
            "{} lines",
            text.lines().count()
        );
    }
}
