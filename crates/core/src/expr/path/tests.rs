use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Step {
    path: PathExpr,
}

fn path(toml_value: &str) -> PathExpr {
    toml::from_str::<Step>(&format!("path = {toml_value}"))
        .unwrap_or_else(|e| panic!("{toml_value}: {e}"))
        .path
}

fn render(
    expr: &PathExpr,
    body: &serde_json::Value,
    raw: bool,
) -> Result<Option<String>, PathError> {
    let body = body.to_string();
    let headers = [];
    let input = Input::new(
        &headers,
        body.as_bytes(),
        serde_json::json!({"id": "evt_1"}),
    );
    expr.render(&input, raw)
}

fn segment(value: &str) -> Result<Option<String>, PathError> {
    render(
        &path(r#"{ jq = '"/v1/orders/\(.id)"' }"#),
        &serde_json::json!({ "id": value }),
        false,
    )
}

#[test]
fn an_interpolated_value_is_one_segment() {
    let cases = [
        ("o-7", "/v1/orders/o-7"),
        ("a/b", "/v1/orders/a%2Fb"),
        ("%2e%2e", "/v1/orders/%252e%252e"),
        ("%2E.", "/v1/orders/%252E."),
        (".%2e", "/v1/orders/.%252e"),
        ("a?x=1", "/v1/orders/a%3Fx=1"),
        ("a#frag", "/v1/orders/a%23frag"),
        ("a&b=c", "/v1/orders/a&b=c"),
        ("http://evil/", "/v1/orders/http%3A%2F%2Fevil%2F"),
        ("//evil", "/v1/orders/%2F%2Fevil"),
        ("user@host", "/v1/orders/user%40host"),
        ("a b\\c", "/v1/orders/a%20b%5Cc"),
        ("caf\u{e9}", "/v1/orders/caf%C3%A9"),
        ("!$'()*+,;=-._~", "/v1/orders/!$'()*+,;=-._~"),
        ("%", "/v1/orders/%25"),
    ];
    for (value, expected) in cases {
        assert_eq!(segment(value), Ok(Some(expected.to_owned())), "{value:?}");
    }
}

#[test]
fn the_encoder_keeps_unreserved_and_sub_delims_and_encodes_every_other_byte() {
    for byte in 0u8..=0x7f {
        let text = char::from(byte).to_string();
        let encoded: String = utf8_percent_encode(&text, SEGMENT).collect();
        let kept = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&byte);
        assert_eq!(encoded == text, kept, "{byte:#x} in a segment");
        let encoded: String = utf8_percent_encode(&text, QUERY_COMPONENT).collect();
        let kept = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        assert_eq!(encoded == text, kept, "{byte:#x} in a query component");
    }
}

#[test]
fn dot_segments_and_control_characters_are_refused() {
    // Partners that decode `%2F` before resolving dot segments would climb on `..%2F..`.
    for value in [".", "..", "../../admin", "a/../..", "..\\x"] {
        assert_eq!(segment(value), Err(PathError::DotSegment), "{value:?}");
    }
    for value in ["a\r\nHost: evil", "a\0", "\u{7f}", "\u{85}", "\t"] {
        assert_eq!(
            segment(value),
            Err(PathError::ControlCharacter),
            "{value:?}"
        );
    }
    let raw = path(r#"{ jq = '"/v1/\(.p)"' }"#);
    for value in [
        "a/../b", "%2e%2e/x", "a/%2E./x", "a/.%2e", "./x", "a\\..\\b",
    ] {
        let body = serde_json::json!({ "p": value });
        assert_eq!(
            render(&raw, &body, true),
            Err(PathError::DotSegment),
            "{value:?}"
        );
    }
    assert_eq!(
        render(&path(r#""/v1/../admin""#), &serde_json::json!({}), false),
        Err(PathError::DotSegment)
    );
}

#[test]
fn values_after_the_steps_question_mark_are_query_components() {
    let expr = path(r#"{ jq = '"/v1/search/\(.a)?q=\(.a)&n=\(.n)"' }"#);
    let body = serde_json::json!({ "a": "x&admin=1#f?/ +", "n": 2 });
    assert_eq!(
        render(&expr, &body, false),
        Ok(Some(
            "/v1/search/x&admin=1%23f%3F%2F%20+?q=x%26admin%3D1%23f%3F%2F%20%2B&n=2".to_owned()
        ))
    );
}

#[test]
fn raw_paths_insert_values_as_they_are() {
    let expr = path(r#"{ jq = '"/v1/\(.p)"' }"#);
    let body = serde_json::json!({ "p": "files/a%20b?x=1" });
    assert_eq!(
        render(&expr, &body, true),
        Ok(Some("/v1/files/a%20b?x=1".to_owned()))
    );
    assert_eq!(
        render(&expr, &serde_json::json!({ "p": "a\nb" }), true),
        Err(PathError::ControlCharacter)
    );
}

#[test]
fn every_interpolated_string_is_marked_and_nested_ones_belong_to_their_value() {
    let expr =
        path(r#"{ jq = 'if .k then "/a/\(.id)" else ("/b/\("x/\(.id)")" | ascii_downcase) end' }"#);
    let body = |k: bool| serde_json::json!({ "k": k, "id": "Q/1" });
    assert_eq!(
        render(&expr, &body(true), false),
        Ok(Some("/a/Q%2F1".to_owned()))
    );
    // The outer string's value is `x/Q/1`, encoded as one segment; lower-casing it afterwards
    // lower-cases the value, not the encoding's effect.
    assert_eq!(
        render(&expr, &body(false), false),
        Ok(Some("/b/x%2Fq%2F1".to_owned()))
    );
    let sliced = path(r#"{ jq = '"/c/\(.id)" | .[0:6]' }"#);
    assert_eq!(render(&sliced, &body(true), false), Err(PathError::Altered));
    let expr = path(r#"{ jq = '"/b/\("x/\(.id)")"' }"#);
    assert_eq!(
        render(&expr, &body(false), false),
        Ok(Some("/b/x%2FQ%2F1".to_owned()))
    );
    // Numbers and other values are interpolated as their JSON text.
    let expr = path(r#"{ jq = '"/n/\(.n)/\(.o)"' }"#);
    assert_eq!(
        render(&expr, &serde_json::json!({ "n": 7, "o": {"a": 1} }), false),
        Ok(Some("/n/7/%7B%22a%22%3A1%7D".to_owned()))
    );
}

#[test]
fn a_value_cannot_forge_or_break_the_markers() {
    let expr = path(r#"{ jq = '"/v1/\(.id)"' }"#);
    for value in ["\u{e000}", "\u{e001}", "%EE%80%80x\u{e001}"] {
        let out = render(&expr, &serde_json::json!({ "id": value }), false).expect("renders");
        let out = out.expect("a path");
        assert!(
            out.starts_with("/v1/%EE%80%8") || out.starts_with("/v1/%25"),
            "{out:?}"
        );
        assert!(!out.contains(['\u{e000}', '\u{e001}']), "{out:?}");
    }
    // Sender data that reaches the output without interpolation cannot close a value either.
    let expr = path(r#"{ jq = '"/v1/\(.id)" + .tail' }"#);
    let body = serde_json::json!({ "id": "a", "tail": "\u{e001}" });
    assert_eq!(render(&expr, &body, false), Err(PathError::Altered));
}

#[test]
fn literals_and_filters_without_interpolation_are_taken_as_written() {
    assert_eq!(
        render(&path(r#""/v1/raw?x=1""#), &serde_json::json!({}), false),
        Ok(Some("/v1/raw?x=1".to_owned()))
    );
    assert_eq!(
        render(
            &path(r#"{ jq = '"/v1/" + .id' }"#),
            &serde_json::json!({"id": "a/b"}),
            false
        ),
        Ok(Some("/v1/a/b".to_owned()))
    );
    assert_eq!(
        render(
            &path(r#"{ jq = '.missing' }"#),
            &serde_json::json!({}),
            false
        ),
        Ok(None)
    );
    assert!(path(r#"{ header = "X-Path" }"#).is_header());
}

#[test]
fn format_strings_and_bad_filters_are_refused_at_load() {
    for bad in [
        r#"{ jq = '@uri "/v1/\(.id)"' }"#,
        r#"{ jq = '"/v1/\(.id' }"#,
        r#"{ jq = 'nope' }"#,
    ] {
        assert!(
            toml::from_str::<Step>(&format!("path = {bad}")).is_err(),
            "{bad}"
        );
    }
    // A format used as a filter encodes the whole value and needs no marking.
    let expr = path(r#"{ jq = '"/v1/" + (.id | @uri)' }"#);
    assert_eq!(
        render(&expr, &serde_json::json!({"id": "a/b"}), false),
        Ok(Some("/v1/a%2Fb".to_owned()))
    );
}
