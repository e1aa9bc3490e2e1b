use hookyard_core::config::{EchoHandshake, EchoWhen, Handshake, Secret, SecretRef};
use http::{Method, StatusCode};
use serde_json::json;

use super::*;

fn secret(value: &str) -> Secret {
    Secret::from_value(SecretRef::Env("HANDSHAKE_SECRET".into()), value)
}

fn websub() -> Handshake {
    Handshake::Websub {
        verify_token: secret("meta-token"),
    }
}

fn zoom() -> Handshake {
    Handshake::Zoom {
        secret_token: secret("zoom-secret"),
    }
}

fn echo_query() -> Handshake {
    Handshake::Echo(EchoHandshake {
        query: Some("challenge".to_owned()),
        json_pointer: None,
        when: None,
    })
}

fn echo_json(when: Option<EchoWhen>) -> Handshake {
    Handshake::Echo(EchoHandshake {
        query: None,
        json_pointer: Some("/challenge".to_owned()),
        when,
    })
}

fn text(s: &str) -> Option<Answer> {
    Some(Answer::Text(s.to_owned()))
}

#[test]
fn slack_url_verification_is_answered_with_its_challenge() {
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    assert_eq!(
        from_body(&Handshake::Slack {}, body),
        Ok(Some(Answer::Json(
            json!({ "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" })
        )))
    );
}

#[test]
fn slack_events_and_other_bodies_fall_through() {
    for body in [
        &br#"{"type":"event_callback","event":{"type":"message","text":"url_verification"}}"#[..],
        b"not json but url_verification",
        b"",
    ] {
        assert_eq!(from_body(&Handshake::Slack {}, body), Ok(None));
    }
    // A query never makes a Slack handshake.
    assert_eq!(
        from_query(&Handshake::Slack {}, &Method::GET, Some("challenge=x")),
        Ok(None)
    );
}

#[test]
fn slack_url_verification_without_a_usable_challenge_is_refused() {
    for (body, error) in [
        (
            &br#"{"type":"url_verification"}"#[..],
            HandshakeError::Missing,
        ),
        (
            br#"{"type":"url_verification","challenge":42}"#,
            HandshakeError::Missing,
        ),
        (
            br#"{"type":"url_verification","challenge":"a\u0000b"}"#,
            HandshakeError::ControlCharacter,
        ),
    ] {
        assert_eq!(from_body(&Handshake::Slack {}, body), Err(error));
    }
    let long = format!(
        r#"{{"type":"url_verification","challenge":"{}"}}"#,
        "c".repeat(MAX_CHALLENGE_BYTES + 1)
    );
    let refused = from_body(&Handshake::Slack {}, long.as_bytes());
    assert_eq!(refused, Err(HandshakeError::TooLong));
    assert_eq!(HandshakeError::TooLong.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn websub_answers_the_challenge_only_for_the_right_token() {
    let query = "hub.mode=subscribe&hub.verify_token=meta-token&hub.challenge=1158201444";
    assert_eq!(
        from_query(&websub(), &Method::GET, Some(query)),
        Ok(text("1158201444"))
    );
    for wrong in [
        "hub.mode=subscribe&hub.verify_token=meta-tokeN&hub.challenge=1",
        "hub.mode=subscribe&hub.verify_token=&hub.challenge=1",
        "hub.mode=subscribe&hub.challenge=1",
    ] {
        assert_eq!(
            from_query(&websub(), &Method::GET, Some(wrong)),
            Err(HandshakeError::Forbidden),
            "{wrong}"
        );
    }
    assert_eq!(HandshakeError::Forbidden.status(), StatusCode::FORBIDDEN);
}

#[test]
fn websub_needs_a_get_with_mode_subscribe() {
    let query = "hub.mode=subscribe&hub.verify_token=meta-token&hub.challenge=1";
    assert_eq!(from_query(&websub(), &Method::POST, Some(query)), Ok(None));
    assert_eq!(
        from_query(&websub(), &Method::GET, Some("hub.mode=unknown")),
        Ok(None)
    );
    assert_eq!(from_query(&websub(), &Method::GET, None), Ok(None));
}

#[test]
fn websub_refuses_oversize_missing_and_repeated_values() {
    let long = format!(
        "hub.mode=subscribe&hub.verify_token=meta-token&hub.challenge={}",
        "1".repeat(MAX_CHALLENGE_BYTES + 1)
    );
    assert_eq!(
        from_query(&websub(), &Method::GET, Some(&long)),
        Err(HandshakeError::TooLong)
    );
    assert_eq!(
        from_query(
            &websub(),
            &Method::GET,
            Some("hub.mode=subscribe&hub.verify_token=meta-token")
        ),
        Err(HandshakeError::Missing)
    );
    assert_eq!(
        from_query(
            &websub(),
            &Method::GET,
            Some("hub.mode=subscribe&hub.verify_token=x&hub.verify_token=meta-token")
        ),
        Err(HandshakeError::Repeated)
    );
}

#[test]
fn microsoft_graph_echoes_the_decoded_validation_token() {
    let query = "validationToken=Validation%3A%20Testing%20client%20application";
    for method in [Method::POST, Method::GET] {
        assert_eq!(
            from_query(&Handshake::MicrosoftGraph {}, &method, Some(query)),
            Ok(text("Validation: Testing client application"))
        );
    }
    assert_eq!(
        from_query(
            &Handshake::MicrosoftGraph {},
            &Method::POST,
            Some("other=1")
        ),
        Ok(None)
    );
    assert_eq!(
        from_query(
            &Handshake::MicrosoftGraph {},
            &Method::POST,
            Some("validationToken=a%0D%0ASet-Cookie:%20x")
        ),
        Err(HandshakeError::ControlCharacter)
    );
    assert_eq!(
        from_query(
            &Handshake::MicrosoftGraph {},
            &Method::PUT,
            Some("validationToken=a")
        ),
        Ok(None)
    );
}

#[test]
fn zoom_url_validation_is_answered_with_the_hmac_of_the_plain_token() {
    let body =
        br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    // python3 -c "import hmac,hashlib;print(hmac.new(b'zoom-secret',b'qgg8vlvZRS6UYooatFL8Aw',hashlib.sha256).hexdigest())"
    let expected = "b17f0320a1322a509340a1a835b3d9edbc491f0b0790ed2d20d0604d39dfe922";
    assert_eq!(
        from_body(&zoom(), body),
        Ok(Some(Answer::Json(json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": expected,
        }))))
    );
}

#[test]
fn zoom_events_fall_through_and_bad_validations_are_refused() {
    let event = br#"{"event":"meeting.started","payload":{"object":{"id":"1"}}}"#;
    assert_eq!(from_body(&zoom(), event), Ok(None));
    let no_token = br#"{"event":"endpoint.url_validation","payload":{}}"#;
    assert_eq!(from_body(&zoom(), no_token), Err(HandshakeError::Missing));
}

#[test]
fn echo_query_answers_the_parameter_as_text() {
    for method in [Method::GET, Method::POST] {
        assert_eq!(
            from_query(&echo_query(), &method, Some("x=1&challenge=abc%2Fdef")),
            Ok(text("abc/def"))
        );
    }
    assert_eq!(
        from_query(&echo_query(), &Method::GET, Some("x=1")),
        Ok(None)
    );
    let long = format!("challenge={}", "a".repeat(MAX_CHALLENGE_BYTES + 1));
    assert_eq!(
        from_query(&echo_query(), &Method::GET, Some(&long)),
        Err(HandshakeError::TooLong)
    );
    assert_eq!(
        from_query(
            &echo_query(),
            &Method::GET,
            Some(&long[..MAX_CHALLENGE_BYTES + 10])
        ),
        Ok(text(&"a".repeat(MAX_CHALLENGE_BYTES)))
    );
}

#[test]
fn echo_json_pointer_answers_the_field_when_the_condition_holds() {
    let when = Some(EchoWhen {
        pointer: "/type".to_owned(),
        equals: "verification".to_owned(),
    });
    let handshake = echo_json(when);
    assert_eq!(
        from_body(&handshake, br#"{"type":"verification","challenge":"c1"}"#),
        Ok(Some(Answer::Json(json!({ "challenge": "c1" }))))
    );
    assert_eq!(
        from_body(&handshake, br#"{"type":"event","challenge":"c1"}"#),
        Ok(None)
    );
    assert_eq!(
        from_body(&handshake, br#"{"type":"verification"}"#),
        Err(HandshakeError::Missing)
    );
}

#[test]
fn echo_json_pointer_without_condition_needs_a_string_there() {
    let handshake = echo_json(None);
    assert_eq!(
        from_body(&handshake, br#"{"challenge":"c2"}"#),
        Ok(Some(Answer::Json(json!({ "challenge": "c2" }))))
    );
    for body in [
        &br#"{"challenge":{"a":1}}"#[..],
        br#"{"other":1}"#,
        b"plain",
    ] {
        assert_eq!(from_body(&handshake, body), Ok(None));
    }
}

#[test]
fn pointer_key_is_the_unescaped_last_token() {
    assert_eq!(last_token("/payload/plain~1token~0x"), "plain/token~x");
}

#[test]
fn an_empty_secret_is_refused_at_start() {
    let empty = Handshake::Websub {
        verify_token: secret(""),
    };
    assert_eq!(check(&empty), Err(SetupError::EmptySecret("verify_token")));
    assert_eq!(check(&zoom()), Ok(()));
    assert_eq!(check(&Handshake::Slack {}), Ok(()));
}
