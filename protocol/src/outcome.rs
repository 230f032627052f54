//! A worker's answer to a `node` message (`PROTOCOL.md`, "Graph nodes"):
//! the typed outcome object, and applying its changes to a store.

use serde::Deserialize;
use serde_json::{Map, Value};

/// What one node phase returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeOutcome {
    /// The action, when the node returned one.
    pub action: Option<String>,
    /// `prep` and `exec`: the value (`Null` when left out).
    pub value: Value,
    /// What the phase did to the store.
    pub changes: Changes,
}

/// Changes to the shared store, by top-level key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Keys set to new values.
    pub set: Map<String, Value>,
    /// Keys removed.
    pub delete: Vec<String>,
}

impl Changes {
    /// Applies `set`, then `delete`.
    pub fn apply(self, store: &mut Map<String, Value>) {
        for (k, v) in self.set {
            store.insert(k, v);
        }
        for k in &self.delete {
            store.shift_remove(k);
        }
    }

    /// Applies changes made on a copy of `base` to `store`, which others
    /// may have changed since `base` was taken (the runs of a concurrent
    /// batch flow share one store): a key nobody else changed takes the new
    /// value; where both sides changed objects, the members this side
    /// changed are merged into the store's object, recursively; any other
    /// clash goes to this side (the later writer).
    pub fn apply_since(self, base: &Map<String, Value>, store: &mut Map<String, Value>) {
        for (k, v) in self.set {
            let merged = match store.get(&k) {
                Some(now) if base.get(&k) != Some(now) => merge3(base.get(&k), now, v),
                _ => v,
            };
            store.insert(k, merged);
        }
        for k in &self.delete {
            store.shift_remove(k);
        }
    }

    /// The keys this changes.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.set.keys().chain(self.delete.iter())
    }

    /// What turned `before` into `after`, by top-level key.
    pub fn between(before: &Map<String, Value>, after: &Map<String, Value>) -> Changes {
        Changes {
            set: after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delete: before
                .keys()
                .filter(|k| !after.contains_key(*k))
                .cloned()
                .collect(),
        }
    }
}

impl NodeOutcome {
    /// Decodes a `result` value; the error says what is wrong with it.
    pub fn decode(value: Value) -> Result<NodeOutcome, OutcomeError> {
        if !value.is_object() {
            return Err(OutcomeError(format!(
                "the worker answered with {}, not an outcome object",
                kind_of(&value)
            )));
        }
        let wire: Wire = serde_json::from_value(value)
            .map_err(|e| OutcomeError(format!("the outcome is not as PROTOCOL.md says: {e}")))?;
        Ok(NodeOutcome {
            action: wire.action,
            value: wire.value,
            changes: wire.changes.map_or_else(Changes::default, |c| Changes {
                set: c.set,
                delete: c.delete,
            }),
        })
    }
}

/// An outcome that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutcomeError(pub String);

/// The outcome object as the wire has it; unknown members are ignored.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    changes: Option<WireChanges>,
}

#[derive(Deserialize)]
struct WireChanges {
    #[serde(default)]
    set: Map<String, Value>,
    #[serde(default)]
    delete: Vec<String>,
}

/// `theirs` (made from `base`) merged into `now` (also made from `base`).
fn merge3(base: Option<&Value>, now: &Value, theirs: Value) -> Value {
    let empty = Map::new();
    let base_obj = match base {
        None => &empty,
        Some(Value::Object(b)) => b,
        Some(_) => return theirs,
    };
    let (Value::Object(now_obj), Value::Object(theirs_obj)) = (now, &theirs) else {
        return theirs;
    };
    let mut out = now_obj.clone();
    for (k, tv) in theirs_obj {
        if base_obj.get(k) == Some(tv) {
            continue; // this side left it as it was
        }
        let v = match out.get(k) {
            Some(nv) if base_obj.get(k) != Some(nv) => merge3(base_obj.get(k), nv, tv.clone()),
            _ => tv.clone(),
        };
        out.insert(k.clone(), v);
    }
    for k in base_obj.keys() {
        if !theirs_obj.contains_key(k) && out.get(k) == base_obj.get(k) {
            out.shift_remove(k); // this side deleted it, and the other left it
        }
    }
    Value::Object(out)
}

/// What a JSON value is, for errors: `a string`, `an object`, ...
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_and_applies_changes() {
        let o = NodeOutcome::decode(
            json!({"action": "go", "changes": {"set": {"a": 2}, "delete": ["b"]}}),
        )
        .unwrap();
        assert_eq!(o.action.as_deref(), Some("go"));
        let mut store = json!({"a": 1, "b": 1, "c": 1}).as_object().unwrap().clone();
        o.changes.apply(&mut store);
        assert_eq!(Value::Object(store), json!({"a": 2, "c": 1}));
    }

    #[test]
    fn refuses_malformed_outcomes() {
        for bad in [
            json!(3),
            json!({"action": 1}),
            json!({"changes": {"set": []}}),
            json!({"changes": {"delete": [1]}}),
        ] {
            assert!(NodeOutcome::decode(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn apply_since_merges_what_two_sides_changed_in_one_object() {
        let base = json!({"done": {"a": 1}, "n": 1})
            .as_object()
            .unwrap()
            .clone();
        // Another run set done.b and n meanwhile.
        let mut store = json!({"done": {"a": 1, "b": 2}, "n": 2})
            .as_object()
            .unwrap()
            .clone();
        let mut copy = base.clone();
        copy.insert("done".into(), json!({"a": 1, "c": 3}));
        copy.insert("n".into(), json!(3));
        Changes::between(&base, &copy).apply_since(&base, &mut store);
        assert_eq!(
            Value::Object(store),
            json!({"done": {"a": 1, "b": 2, "c": 3}, "n": 3})
        );
    }

    #[test]
    fn between_finds_set_and_deleted_keys() {
        let before = json!({"a": 1, "b": 2, "c": [1]})
            .as_object()
            .unwrap()
            .clone();
        let after = json!({"a": 1, "c": [1, 2], "d": null})
            .as_object()
            .unwrap()
            .clone();
        let c = Changes::between(&before, &after);
        assert_eq!(Value::Object(c.set), json!({"c": [1, 2], "d": null}));
        assert_eq!(c.delete, vec!["b".to_string()]);
    }
}
