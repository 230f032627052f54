//! A worker's answer to a `node` message (`PROTOCOL.md`, "Graph nodes"):
//! decoding the outcome object and applying its changes to a store.

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
    pub fn decode(value: Value) -> Result<NodeOutcome, String> {
        let Value::Object(mut obj) = value else {
            return Err(format!(
                "the worker answered with {}, not an outcome object",
                kind_of(&value)
            ));
        };
        let action = match obj.shift_remove("action") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(format!(
                    "the outcome's \"action\" is {}, not a string",
                    kind_of(&other)
                ))
            }
        };
        let value = obj.shift_remove("value").unwrap_or(Value::Null);
        let changes = match obj.shift_remove("changes") {
            None | Some(Value::Null) => Changes::default(),
            Some(Value::Object(mut c)) => Changes {
                set: match c.shift_remove("set") {
                    None => Map::new(),
                    Some(Value::Object(m)) => m,
                    Some(_) => return Err("the outcome's \"changes.set\" is not an object".into()),
                },
                delete: match c.shift_remove("delete") {
                    None => Vec::new(),
                    Some(Value::Array(keys)) => keys
                        .into_iter()
                        .map(|k| match k {
                            Value::String(s) => Ok(s),
                            _ => Err(
                                "the outcome's \"changes.delete\" lists a key that is not a string"
                                    .to_string(),
                            ),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err("the outcome's \"changes.delete\" is not an array".into())
                    }
                },
            },
            Some(_) => return Err("the outcome's \"changes\" is not an object".into()),
        };
        Ok(NodeOutcome {
            action,
            value,
            changes,
        })
    }
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
