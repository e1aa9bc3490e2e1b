//! The HMAC vector is the example in the Standard Webhooks README (and Svix's docs); the
//! rotated one was computed with Python's standard library:
//! `python3 -c 'import hmac,hashlib,base64; k=base64.b64decode("cm90YXRlZC1zZWNyZXQtMzItYnl0ZXMtbG9uZyEhIQ==");
//! print(base64.b64encode(hmac.new(k, b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}",
//! hashlib.sha256).digest()).decode())'`. Ed25519 signatures are made in the test with
//! ed25519-dalek's signing side, which this code never uses.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signer, SigningKey};
use hookyard_core::config::Signature;
use proptest::prelude::*;

use super::super::{
    VerifyError,
    tests::{at, headers, secret},
    verify,
};
use super::{Candidate, parse};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATED: &str = "whsec_cm90YXRlZC1zZWNyZXQtMzItYnl0ZXMtbG9uZyEhIQ==";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: u64 = 1_614_265_330;
const BODY: &[u8] = br#"{"test": 2432232314}"#;
const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const ROTATED_SIG: &str = "v1,7eBc3EiSrMahP8KcKptHgsQILiJ068HLAk570vJ4gAs=";

fn config(secrets: &[&str]) -> Signature {
    Signature::StandardWebhooks {
        secrets: secrets.iter().map(|s| secret(s)).collect(),
        tolerance: Duration::from_secs(300),
    }
}

fn check_with(
    secrets: &[&str],
    id: &str,
    ts: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> Result<(), VerifyError> {
    let h = headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", signature),
    ]);
    verify(&config(secrets), &h, body, at(now))
}

fn check(signature: &str, body: &[u8]) -> Result<(), VerifyError> {
    check_with(&[SECRET], ID, &TS.to_string(), signature, body, TS)
}

#[test]
fn accepts_the_published_example() {
    assert_eq!(check(SIG, BODY), Ok(()));
}

#[test]
fn svix_header_names_are_accepted_and_the_standard_names_preferred() {
    let ts = TS.to_string();
    let svix = headers(&[
        ("svix-id", ID),
        ("svix-timestamp", &ts),
        ("svix-signature", SIG),
    ]);
    assert_eq!(verify(&config(&[SECRET]), &svix, BODY, at(TS)), Ok(()));
    let tampered = headers(&[
        ("svix-id", "msg_other"),
        ("svix-timestamp", &ts),
        ("svix-signature", SIG),
    ]);
    assert_eq!(
        verify(&config(&[SECRET]), &tampered, BODY, at(TS)),
        Err(VerifyError::NoMatch)
    );
    // One family per request: a forged `webhook-` set is checked, not the valid `svix-` one.
    let both = headers(&[
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", &ts),
        ("webhook-signature", SIG),
        ("svix-id", ID),
        ("svix-timestamp", &ts),
        ("svix-signature", SIG),
    ]);
    assert_eq!(
        verify(&config(&[SECRET]), &both, BODY, at(TS)),
        Err(VerifyError::NoMatch)
    );
    let mixed = headers(&[
        ("webhook-id", ID),
        ("svix-timestamp", &ts),
        ("svix-signature", SIG),
    ]);
    assert_eq!(
        verify(&config(&[SECRET]), &mixed, BODY, at(TS)),
        Err(VerifyError::MissingHeader("webhook-timestamp".to_owned()))
    );
    assert_eq!(
        verify(&config(&[SECRET]), &headers(&[]), BODY, at(TS)),
        Err(VerifyError::MissingHeader("webhook-id".to_owned()))
    );
    let repeated = headers(&[
        ("svix-id", ID),
        ("svix-timestamp", &ts),
        ("svix-signature", SIG),
        ("svix-signature", SIG),
    ]);
    assert_eq!(
        verify(&config(&[SECRET]), &repeated, BODY, at(TS)),
        Err(VerifyError::MalformedHeader("svix-signature".to_owned()))
    );
}

#[test]
fn refuses_a_changed_body_id_timestamp_or_secret() {
    assert_eq!(
        check(SIG, br#"{"test":2432232314}"#),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check(SIG, br#"{"test": 2432232315}"#),
        Err(VerifyError::NoMatch)
    );
    let ts = TS.to_string();
    assert_eq!(
        check_with(&[SECRET], "msg_other", &ts, SIG, BODY, TS),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check_with(&[SECRET], ID, &(TS + 1).to_string(), SIG, BODY, TS),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check_with(&[ROTATED], ID, &ts, SIG, BODY, TS),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn any_listed_secret_and_any_signature_in_the_header_passes() {
    let ts = TS.to_string();
    assert_eq!(
        check_with(&[ROTATED, SECRET], ID, &ts, SIG, BODY, TS),
        Ok(())
    );
    assert_eq!(
        check_with(&[SECRET, ROTATED], ID, &ts, ROTATED_SIG, BODY, TS),
        Ok(())
    );
    assert_eq!(check(&format!("{ROTATED_SIG} {SIG}"), BODY), Ok(()));
    assert_eq!(
        check(&format!("v2,AAAA {SIG}"), BODY),
        Ok(()),
        "unknown versions are skipped"
    );
    assert_eq!(check(ROTATED_SIG, BODY), Err(VerifyError::NoMatch));
}

#[test]
fn timestamps_outside_tolerance_or_malformed_are_refused() {
    let ts = TS.to_string();
    assert_eq!(check_with(&[SECRET], ID, &ts, SIG, BODY, TS + 299), Ok(()));
    assert_eq!(check_with(&[SECRET], ID, &ts, SIG, BODY, TS - 299), Ok(()));
    assert_eq!(
        check_with(&[SECRET], ID, &ts, SIG, BODY, TS + 301),
        Err(VerifyError::TimestampOutsideTolerance)
    );
    for bad in ["", "soon", "1614265330.5", "-1", "184467440737095516160"] {
        assert_eq!(
            check_with(&[SECRET], ID, bad, SIG, BODY, TS),
            Err(VerifyError::TimestampMalformed),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_or_unknown_signatures_are_refused() {
    let malformed = Err(VerifyError::MalformedHeader("webhook-signature".into()));
    let b64 = &SIG[3..];
    for bad in [
        "".to_owned(),
        "   ".to_owned(),
        "v1,".to_owned(),
        "v1".to_owned(),
        format!("v1,{}", &b64[..40]),
        format!("v1,{b64}AAAA"),
        format!("v1,{}!", &b64[..43]),
        format!("v1a,{b64}"),
        format!("{SIG} v1,"),
        vec![SIG; 17].join(" "),
    ] {
        assert_eq!(check(&bad, BODY), malformed, "{bad:?}");
    }
    assert_eq!(
        check(&format!("v2,{b64}"), BODY),
        Err(VerifyError::UnsupportedVersion("webhook-signature".into()))
    );
    let h = headers(&[("webhook-id", ID), ("webhook-signature", SIG)]);
    assert_eq!(
        verify(&config(&[SECRET]), &h, BODY, at(TS)),
        Err(VerifyError::MissingHeader("webhook-timestamp".into()))
    );
}

#[test]
fn ed25519_signatures_verify_with_a_public_key() {
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let public = format!(
        "whpk_{}",
        STANDARD.encode(signing.verifying_key().as_bytes())
    );
    let ts = TS.to_string();
    let signed = |body: &[u8]| {
        let message = [ID.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
        format!("v1a,{}", STANDARD.encode(signing.sign(&message).to_bytes()))
    };
    let v1a = signed(BODY);
    assert_eq!(
        check_with(&[SECRET, &public], ID, &ts, &v1a, BODY, TS),
        Ok(())
    );
    assert_eq!(
        check_with(&[&public], ID, &ts, &format!("{SIG} {v1a}"), BODY, TS),
        Ok(())
    );
    assert_eq!(
        check_with(&[&public], ID, &ts, &v1a, br#"{"test":2432232314}"#, TS),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check_with(&[&public], ID, &ts, &signed(b"other"), BODY, TS),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check_with(&[SECRET], ID, &ts, &v1a, BODY, TS),
        Err(VerifyError::NoMatch)
    );
    // A public key never checks an HMAC signature.
    assert_eq!(
        check_with(&[&public], ID, &ts, SIG, BODY, TS),
        Err(VerifyError::NoMatch)
    );
}

fn format(candidates: &[Candidate]) -> String {
    candidates
        .iter()
        .map(|c| match c {
            Candidate::V1(s) => format!("v1,{}", STANDARD.encode(s)),
            Candidate::V1a(s) => format!("v1a,{}", STANDARD.encode(s)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn candidate() -> impl Strategy<Value = Candidate> {
    prop_oneof![
        proptest::array::uniform32(any::<u8>()).prop_map(Candidate::V1),
        proptest::collection::vec(any::<u8>(), 64).prop_map(|v| {
            let mut s = [0u8; 64];
            s.copy_from_slice(&v);
            Candidate::V1a(s)
        }),
    ]
}

proptest! {
    #[test]
    fn parsing_arbitrary_values_never_panics(value in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse("webhook-signature", &value);
    }

    #[test]
    fn parsing_signature_like_text_never_panics(value in "((v1a?|v2)?,?[A-Za-z0-9+/=]{0,90} ?){0,4}") {
        let _ = parse("webhook-signature", value.as_bytes());
    }

    #[test]
    fn formatted_headers_round_trip(candidates in proptest::collection::vec(candidate(), 1..=16)) {
        prop_assert_eq!(parse("webhook-signature", format(&candidates).as_bytes()), Ok(candidates));
    }
}
