//! Twilio's own OpenAPI spec, as far as flexhook calls it: the operations copied from
//! twilio/twilio-oai into `tests/fixtures/twilio/openapi_subset.json` (see the README there),
//! read by the contract tests and by stand-ins that answer as Twilio would.

use std::collections::BTreeMap;

use serde_json::Value;

const SUBSET: &str = include_str!("../fixtures/twilio/openapi_subset.json");

pub fn spec() -> Value {
    serde_json::from_str(SUBSET).expect("openapi_subset.json is JSON")
}

pub fn operations(spec: &Value) -> &Vec<Value> {
    spec["operations"]
        .as_array()
        .expect("the fixture lists its operations")
}

pub fn operation<'a>(spec: &'a Value, id: &str) -> &'a Value {
    operations(spec)
        .iter()
        .find(|op| op["operationId"] == id)
        .unwrap_or_else(|| panic!("operation {id} is not in the fixture"))
}

pub fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// The path parameters of `path` when it fits `template`, where `{X}` is one non-empty segment.
pub fn match_template(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut captured = BTreeMap::new();
    for (t, p) in t.iter().zip(&p) {
        match t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            Some(name) if !p.is_empty() => {
                captured.insert(name.to_owned(), (*p).to_owned());
            }
            Some(_) => return None,
            None if t == p => {}
            None => return None,
        }
    }
    Some(captured)
}

/// The one operation of the spec that `method` + `path` is, with its path parameters.
pub fn operation_for<'a>(
    spec: &'a Value,
    method: &str,
    path: &str,
) -> (&'a Value, BTreeMap<String, String>) {
    let mut found: Vec<(&Value, BTreeMap<String, String>)> = operations(spec)
        .iter()
        .filter(|op| text(&op["method"], "method").eq_ignore_ascii_case(method))
        .filter_map(|op| match_template(text(&op["path"], "path"), path).map(|m| (op, m)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{method} {path} must be exactly one operation of Twilio's spec"
    );
    found.pop().unwrap()
}

pub fn success_status(op: &Value) -> u16 {
    let status = op["success_statuses"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("{} has no success status", op["operationId"]));
    u16::try_from(status).unwrap()
}

pub fn json_response(op: &Value) -> &Value {
    let status = success_status(op).to_string();
    let response = &op["responses"][status.as_str()]["content"]["application/json"];
    assert!(
        response.is_object(),
        "{} has no JSON answer",
        op["operationId"]
    );
    response
}

/// The spec's example answer named `name`, or its only one.
pub fn response_example<'a>(op: &'a Value, name: Option<&str>) -> &'a Value {
    let examples = json_response(op)["examples"].as_object().expect("examples");
    match name {
        Some(n) => examples
            .get(n)
            .unwrap_or_else(|| panic!("no example {n} for {}", op["operationId"])),
        None => {
            assert_eq!(examples.len(), 1, "which example of {}?", op["operationId"]);
            examples.values().next().unwrap()
        }
    }
}

/// The operation of the spec that `method` + `path` is, if exactly one is.
pub fn find_operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let mut found = operations(spec)
        .iter()
        .filter(|op| text(&op["method"], "method").eq_ignore_ascii_case(method))
        .filter(|op| match_template(text(&op["path"], "path"), path).is_some());
    let op = found.next()?;
    found.next().is_none().then_some(op)
}
