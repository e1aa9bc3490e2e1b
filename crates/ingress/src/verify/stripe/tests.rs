//! Vectors computed with Python's standard library:
//! `python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test_secret",
//! b"1700000000.{\"id\":\"evt_1\",\"object\":\"event\"}", hashlib.sha256).hexdigest())'`,
//! and the same with `b"whsec_rotated"`.

use std::time::Duration;

use hookyard_core::config::Signature;
use proptest::prelude::*;

use super::super::{
    VerifyError,
    tests::{at, headers, secret},
    verify,
};
use super::{Header, parse};

const SECRET: &str = "whsec_test_secret";
const ROTATED: &str = "whsec_rotated";
const TS: u64 = 1_700_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
const SIG: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
const ROTATED_SIG: &str = "443d952004499c253336135326bfaef55fed4b9099dfbcff6d4aec5017c5185d";

fn check_with(secrets: &[&str], value: &str, body: &[u8], now: u64) -> Result<(), VerifyError> {
    let signature = Signature::Stripe {
        secrets: secrets.iter().map(|s| secret(s)).collect(),
        tolerance: Duration::from_secs(300),
    };
    verify(
        &signature,
        &headers(&[("Stripe-Signature", value)]),
        body,
        at(now),
    )
}

fn check(value: &str, body: &[u8]) -> Result<(), VerifyError> {
    check_with(&[SECRET], value, body, TS)
}

#[test]
fn accepts_a_right_v1() {
    assert_eq!(check(&format!("t={TS},v1={SIG}"), BODY), Ok(()));
    assert_eq!(
        check(&format!("t={TS},v1={ROTATED_SIG},v1={SIG},v0=abc"), BODY),
        Ok(())
    );
    assert_eq!(
        check(&format!("v1={SIG}, t={TS}, scheme=future"), BODY),
        Ok(())
    );
}

#[test]
fn refuses_a_changed_body_timestamp_or_secret() {
    let header = format!("t={TS},v1={SIG}");
    assert_eq!(
        check(&header, br#"{"id": "evt_1","object":"event"}"#),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check(&header, &BODY[..BODY.len() - 1]),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check(&format!("t={},v1={SIG}", TS + 1), BODY),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check_with(&[ROTATED], &header, BODY, TS),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn any_listed_secret_passes() {
    let rotated = format!("t={TS},v1={ROTATED_SIG}");
    assert_eq!(check_with(&[SECRET, ROTATED], &rotated, BODY, TS), Ok(()));
    assert_eq!(
        check_with(&[ROTATED, SECRET], &format!("t={TS},v1={SIG}"), BODY, TS),
        Ok(())
    );
}

#[test]
fn timestamps_outside_tolerance_or_malformed_are_refused() {
    let header = format!("t={TS},v1={SIG}");
    assert_eq!(check_with(&[SECRET], &header, BODY, TS + 299), Ok(()));
    assert_eq!(
        check_with(&[SECRET], &header, BODY, TS + 301),
        Err(VerifyError::TimestampOutsideTolerance)
    );
    assert_eq!(
        check_with(&[SECRET], &header, BODY, TS - 301),
        Err(VerifyError::TimestampOutsideTolerance)
    );
    for bad in ["", "now", "17e8", "99999999999999999999999999"] {
        assert_eq!(
            check(&format!("t={bad},v1={SIG}"), BODY),
            Err(VerifyError::TimestampMalformed),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_or_unknown_signatures_are_refused() {
    let malformed = Err(VerifyError::MalformedHeader("stripe-signature".into()));
    for bad in [
        String::new(),
        format!("v1={SIG}"),
        format!("t={TS},t={TS},v1={SIG}"),
        format!("t={TS},v1="),
        format!("t={TS},v1={}", &SIG[..63]),
        format!("t={TS},v1={SIG}0"),
        format!("t={TS},v1={}x", &SIG[..63]),
        format!("t={TS},v1{SIG}"),
        format!("t={TS},{}", vec![format!("v1={SIG}"); 17].join(",")),
    ] {
        assert_eq!(check(&bad, BODY), malformed, "{bad:?}");
    }
    assert_eq!(
        check(&format!("t={TS},v0={SIG}"), BODY),
        Err(VerifyError::UnsupportedVersion("stripe-signature".into()))
    );
    let two = headers(&[
        ("stripe-signature", &format!("t={TS},v1={SIG}")),
        ("stripe-signature", &format!("t={TS},v1={SIG}")),
    ]);
    let signature = Signature::Stripe {
        secrets: vec![secret(SECRET)],
        tolerance: Duration::from_secs(300),
    };
    assert_eq!(verify(&signature, &two, BODY, at(TS)), malformed);
}

proptest! {
    #[test]
    fn parsing_arbitrary_values_never_panics(value in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&value);
    }

    #[test]
    fn parsing_header_like_text_never_panics(value in "((t|v1|v0)=[0-9a-f]{0,70},?){0,5}") {
        let _ = parse(value.as_bytes());
    }

    #[test]
    fn formatted_headers_round_trip(
        timestamp in any::<u64>(),
        v1 in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 32), 1..=16),
    ) {
        let text = timestamp.to_string();
        let value = std::iter::once(format!("t={text}"))
            .chain(v1.iter().map(|s| format!("v1={}", hex::encode(s))))
            .collect::<Vec<_>>()
            .join(",");
        let expected = Header { timestamp_text: &text, timestamp, v1: v1.clone() };
        prop_assert_eq!(parse(value.as_bytes()), Ok(expected));
    }
}
