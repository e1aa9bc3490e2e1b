//! Vectors computed independently of this code: GitHub's and Slack's are the examples in their
//! documentation; the others were computed with Python's standard library, e.g.
//! `python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b"shpss_secret",
//! b"{\"id\":\"evt_1\",\"object\":\"event\"}", hashlib.sha256).digest()).decode())'`.

use std::time::Duration;

use hookyard_core::config::{HmacAlgorithm, HmacSignature, Signature, SignatureEncoding};
use proptest::prelude::*;

use super::super::{
    VerifyError,
    tests::{at, headers, secret},
    verify,
};
use super::{Layout, github, parse, shopify, slack};

/// From GitHub's "Validating webhook deliveries": secret, body, signature.
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &[u8] = b"Hello, World!";
const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
/// `hmac.new(b"rotated", b"Hello, World!", hashlib.sha256).hexdigest()`
const GITHUB_ROTATED_SIG: &str =
    "sha256=a5f4897ca9b869cef6a6ea20fc601bef9be37d6d69a3fab7c9c31c9ddbf89c20";

/// From Slack's "Verifying requests from Slack".
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: u64 = 1_531_420_618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
/// `base64(hmac.new(b"shpss_secret", BODY, sha256))` and the same under `b"shpss_rotated"`.
const SHOPIFY_SIG: &str = "hX0Km2JYBoPr5JjBEPZJI6W5L2if3GGfalqTCBEN4tk=";
const SHOPIFY_ROTATED_SIG: &str = "qIY5HTZ03HuhtFMRnxDBBScR7jPWghFsXUEDlv86kNs=";
/// `base64(hmac.new(b"generic-secret", b"d-1.1700000000." + BODY, sha512))`
const GENERIC_512: &str = "sha512=l8NG9GUTXKe3jQe07B1G0hShddCpNgBvXKTH8FuyscZO1KHQ5QKpiBpu2QFKhY9aA1QXCZHnE8bt9XMjmiTjxw==";
/// `hmac.new(b"generic-secret", BODY, sha1).hexdigest()`
const GENERIC_1: &str = "ba88e62d9f47b3e5eac1286bb40d29b0c0101756";

fn github_sig(secrets: &[&str]) -> Signature {
    Signature::Github {
        secrets: secrets.iter().map(|s| secret(s)).collect(),
    }
}

fn check_github(signature: &str, body: &[u8]) -> Result<(), VerifyError> {
    let h = headers(&[("X-Hub-Signature-256", signature)]);
    verify(&github_sig(&[GITHUB_SECRET]), &h, body, at(0))
}

#[test]
fn github_accepts_the_documented_example() {
    assert_eq!(check_github(GITHUB_SIG, GITHUB_BODY), Ok(()));
    // Hex is accepted in either case.
    assert_eq!(
        check_github(
            &GITHUB_SIG.to_uppercase().replace("SHA256=", "sha256="),
            GITHUB_BODY
        ),
        Ok(())
    );
}

#[test]
fn github_refuses_a_changed_body_or_secret() {
    assert_eq!(
        check_github(GITHUB_SIG, b"Hello, World?"),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check_github(GITHUB_SIG, b"Hello,  World!"),
        Err(VerifyError::NoMatch)
    );
    let h = headers(&[("x-hub-signature-256", GITHUB_SIG)]);
    assert_eq!(
        verify(
            &github_sig(&["It's a Secret to Everybodz"]),
            &h,
            GITHUB_BODY,
            at(0)
        ),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn github_accepts_any_listed_secret_for_rotation() {
    let both = github_sig(&["rotated", GITHUB_SECRET]);
    for signature in [GITHUB_SIG, GITHUB_ROTATED_SIG] {
        let h = headers(&[("x-hub-signature-256", signature)]);
        assert_eq!(verify(&both, &h, GITHUB_BODY, at(0)), Ok(()));
    }
    let h = headers(&[("x-hub-signature-256", GITHUB_ROTATED_SIG)]);
    assert_eq!(
        verify(&github_sig(&[GITHUB_SECRET]), &h, GITHUB_BODY, at(0)),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn github_refuses_malformed_signatures() {
    let malformed = Err(VerifyError::MalformedHeader("x-hub-signature-256".into()));
    let hex = &GITHUB_SIG["sha256=".len()..];
    for bad in [
        "".to_owned(),
        "sha256=".to_owned(),
        format!("sha256={}", &hex[..62]),
        format!("sha256={hex}00"),
        format!("sha256={}zz", &hex[..62]),
        format!("sha256= {hex}"),
        hex.to_owned(),
    ] {
        assert_eq!(check_github(&bad, GITHUB_BODY), malformed, "{bad:?}");
    }
    for other in [format!("sha1={hex}"), format!("SHA256={hex}")] {
        assert_eq!(
            check_github(&other, GITHUB_BODY),
            Err(VerifyError::UnsupportedVersion(
                "x-hub-signature-256".into()
            ))
        );
    }
    assert_eq!(
        verify(
            &github_sig(&[GITHUB_SECRET]),
            &headers(&[]),
            GITHUB_BODY,
            at(0)
        ),
        Err(VerifyError::MissingHeader("x-hub-signature-256".into()))
    );
}

/// Decision: a repeated signature header is refused even when one copy is right, since which
/// copy a chain of proxies kept or added cannot be known.
#[test]
fn repeated_signature_headers_are_refused() {
    let h = headers(&[
        ("x-hub-signature-256", GITHUB_SIG),
        ("x-hub-signature-256", GITHUB_SIG),
    ]);
    assert_eq!(
        verify(&github_sig(&[GITHUB_SECRET]), &h, GITHUB_BODY, at(0)),
        Err(VerifyError::MalformedHeader("x-hub-signature-256".into()))
    );
}

#[test]
fn shopify_accepts_base64_and_refuses_the_rest() {
    let sig = Signature::Shopify {
        secrets: vec![secret("shpss_rotated"), secret("shpss_secret")],
    };
    let check = |value: &str, body: &[u8]| {
        verify(
            &sig,
            &headers(&[("X-Shopify-Hmac-Sha256", value)]),
            body,
            at(0),
        )
    };
    assert_eq!(check(SHOPIFY_SIG, BODY), Ok(()));
    assert_eq!(check(SHOPIFY_ROTATED_SIG, BODY), Ok(()));
    assert_eq!(check(SHOPIFY_SIG.trim_end_matches('='), BODY), Ok(()));
    assert_eq!(
        check(SHOPIFY_SIG, br#"{"id": "evt_1", "object": "event"}"#),
        Err(VerifyError::NoMatch)
    );
    let malformed = Err(VerifyError::MalformedHeader("x-shopify-hmac-sha256".into()));
    for bad in [
        "",
        &SHOPIFY_SIG[..40],
        "hX0Km2JYBoPr5JjBEPZJI6W5L2if3GGfalqTCBEN4tkA",
        "hX0Km2JYBoPr5JjBEPZJI6W5L2if3GGfalqTCBEN4tk=AAAA",
        "hX0Km2JYBoPr5JjBEPZJI6W5L2if3GGfalqTCBEN4t!=",
        "hX0Km2JYBoPr5JjBEPZJI6W5L2if3GGfalqTCBEN4tl=",
    ] {
        assert_eq!(check(bad, BODY), malformed, "{bad:?}");
    }
}

fn slack_check(signature: &str, timestamp: &str, body: &[u8], now: u64) -> Result<(), VerifyError> {
    let sig = Signature::Slack {
        secrets: vec![secret(SLACK_SECRET)],
        tolerance: Duration::from_secs(300),
    };
    let h = headers(&[
        ("X-Slack-Signature", signature),
        ("X-Slack-Request-Timestamp", timestamp),
    ]);
    verify(&sig, &h, body, at(now))
}

#[test]
fn slack_accepts_the_documented_example_within_tolerance() {
    let ts = SLACK_TS.to_string();
    assert_eq!(slack_check(SLACK_SIG, &ts, SLACK_BODY, SLACK_TS), Ok(()));
    assert_eq!(
        slack_check(SLACK_SIG, &ts, SLACK_BODY, SLACK_TS + 299),
        Ok(())
    );
    assert_eq!(
        slack_check(SLACK_SIG, &ts, SLACK_BODY, SLACK_TS + 301),
        Err(VerifyError::TimestampOutsideTolerance)
    );
    assert_eq!(
        slack_check(SLACK_SIG, &(SLACK_TS + 1).to_string(), SLACK_BODY, SLACK_TS),
        Err(VerifyError::NoMatch),
        "the timestamp is signed"
    );
    assert_eq!(
        slack_check(SLACK_SIG, &ts, &SLACK_BODY[1..], SLACK_TS),
        Err(VerifyError::NoMatch)
    );
    for bad in ["", "abc", "1531420618.0", "99999999999999999999999"] {
        assert_eq!(
            slack_check(SLACK_SIG, bad, SLACK_BODY, SLACK_TS),
            Err(VerifyError::TimestampMalformed),
            "{bad:?}"
        );
    }
    assert_eq!(
        slack_check(&SLACK_SIG.replace("v0=", "v1="), &ts, SLACK_BODY, SLACK_TS),
        Err(VerifyError::UnsupportedVersion("x-slack-signature".into()))
    );
}

fn generic(
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: Option<&str>,
    content: &str,
) -> Signature {
    Signature::Hmac(HmacSignature {
        secrets: vec![secret("old-secret"), secret("generic-secret")],
        header: "X-Signature".into(),
        algorithm,
        encoding,
        prefix: prefix.map(str::to_owned),
        content: content.into(),
        timestamp_header: content
            .contains("{timestamp}")
            .then(|| "X-Timestamp".to_owned()),
        id_header: content.contains("{id}").then(|| "X-Delivery".to_owned()),
        tolerance: Duration::from_secs(300),
    })
}

#[test]
fn generic_hmac_signs_the_template() {
    let sig = generic(
        HmacAlgorithm::Sha512,
        SignatureEncoding::Base64,
        Some("sha512="),
        "{id}.{timestamp}.{body}",
    );
    let check = |id: &str, ts: &str, body: &[u8], now: u64| {
        let h = headers(&[
            ("X-Signature", GENERIC_512),
            ("X-Timestamp", ts),
            ("X-Delivery", id),
        ]);
        verify(&sig, &h, body, at(now))
    };
    assert_eq!(check("d-1", "1700000000", BODY, 1_700_000_299), Ok(()));
    assert_eq!(
        check("d-2", "1700000000", BODY, 1_700_000_000),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check("d-1", "1700000001", BODY, 1_700_000_000),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check("d-1", "1700000000", BODY, 1_700_000_301),
        Err(VerifyError::TimestampOutsideTolerance)
    );
    let h = headers(&[("X-Signature", GENERIC_512), ("X-Timestamp", "1700000000")]);
    assert_eq!(
        verify(&sig, &h, BODY, at(1_700_000_000)),
        Err(VerifyError::MissingHeader("X-Delivery".into()))
    );

    let sha1 = generic(HmacAlgorithm::Sha1, SignatureEncoding::Hex, None, "{body}");
    let check = |value: &str| verify(&sha1, &headers(&[("x-signature", value)]), BODY, at(0));
    assert_eq!(check(GENERIC_1), Ok(()));
    assert_eq!(
        check(&format!("{GENERIC_1}00")),
        Err(VerifyError::MalformedHeader("X-Signature".into()))
    );
}

fn layouts() -> Vec<Layout<'static>> {
    vec![github(), shopify(), slack(Duration::from_secs(300))]
}

fn encode(layout: &Layout<'_>, mac: &[u8]) -> String {
    use base64::Engine;
    let encoded = match layout.encoding {
        SignatureEncoding::Hex => hex::encode(mac),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
    };
    format!("{}{encoded}", layout.prefix)
}

proptest! {
    #[test]
    fn parsing_arbitrary_values_never_panics(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        for layout in layouts() {
            let _ = parse(&layout, &value);
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(value in "\\PC{0,120}") {
        for layout in layouts() {
            let _ = parse(&layout, value.as_bytes());
        }
    }

    #[test]
    fn formatted_signatures_round_trip(mac in proptest::array::uniform32(any::<u8>())) {
        for layout in layouts() {
            prop_assert_eq!(parse(&layout, encode(&layout, &mac).as_bytes()), Ok(mac.to_vec()));
        }
    }
}
