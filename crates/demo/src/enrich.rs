//! `hookyard-demo enrich`: the compose example's `subprocess` step, a program run by the
//! worker once per event. It reads the input document (version 1) on stdin and prints one JSON
//! value: a risk score of the order, from its total and line count. Exit 1 with a message on
//! stderr when the input is not an order event.

use serde_json::{Value, json};

/// Orders above this total are flagged for review.
const REVIEW_TOTAL: f64 = 500.0;

/// The result for one input document, or why the document is not an order event.
pub fn score(input: &Value) -> Result<Value, String> {
    if input["version"] != 1 {
        return Err(format!("unsupported input version {}", input["version"]));
    }
    let order = &input["event"]["body"]["order"];
    if !order.is_object() {
        return Err("the event body has no `order` object".to_owned());
    }
    let total = order["total"].as_f64().unwrap_or(0.0);
    let lines = order["lines"].as_array().map_or(0, Vec::len);
    let risk = if total > REVIEW_TOTAL {
        "review"
    } else {
        "low"
    };
    Ok(json!({ "risk": risk, "total": total, "lines": lines }))
}

/// Runs the program: stdin to stdout, exit code as the contract says.
pub fn run() -> std::process::ExitCode {
    let input: Value = match serde_json::from_reader(std::io::stdin().lock()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("the input is not JSON: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match score(&input) {
        Ok(result) => {
            println!("{result}");
            std::process::ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{why}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_scored_and_other_input_refused() {
        let doc = |body: Value| json!({ "version": 1, "event": { "body": body }, "steps": {} });
        assert_eq!(
            score(&doc(json!({"order": {"total": 900, "lines": [1, 2]}}))),
            Ok(json!({"risk": "review", "total": 900.0, "lines": 2}))
        );
        assert_eq!(
            score(&doc(json!({"order": {"id": "o-1"}}))),
            Ok(json!({"risk": "low", "total": 0.0, "lines": 0}))
        );
        assert!(score(&doc(json!({"shipment": {}}))).is_err());
        assert!(score(&json!({"version": 2})).is_err());
    }
}
