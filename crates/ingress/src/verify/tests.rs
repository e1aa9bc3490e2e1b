use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookyard_core::config::{HmacSignature, Secret, SecretRef, Signature};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

/// A resolved secret with `value`.
pub(super) fn secret(value: &str) -> Secret {
    Secret::from_value(SecretRef::Env("SECRET".into()), value)
}

/// Headers from name/value pairs; a name given twice is appended twice.
pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_str(value).expect("valid value"),
        );
    }
    map
}

/// The clock `seconds` after the epoch.
pub(super) fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[test]
fn timestamps_are_decimal_seconds_that_fit_in_u64() {
    assert_eq!(parse_timestamp(b"1700000000"), Ok(1_700_000_000));
    assert_eq!(parse_timestamp(b"0"), Ok(0));
    assert_eq!(parse_timestamp(b"18446744073709551615"), Ok(u64::MAX));
    for bad in [
        &b""[..],
        b"18446744073709551616",
        b"99999999999999999999999999",
        b"+17",
        b"-17",
        b" 17",
        b"17.5",
        b"1e9",
        b"\xff",
    ] {
        assert_eq!(
            parse_timestamp(bad),
            Err(VerifyError::TimestampMalformed),
            "{bad:?}"
        );
    }
}

#[test]
fn tolerance_is_inclusive_and_applies_both_ways() {
    let five_minutes = Duration::from_secs(300);
    let now = at(1_700_000_000);
    for offset in [0, 299, 300] {
        assert_eq!(
            check_timestamp(1_700_000_000 - offset, five_minutes, now),
            Ok(())
        );
        assert_eq!(
            check_timestamp(1_700_000_000 + offset, five_minutes, now),
            Ok(())
        );
    }
    for timestamp in [1_700_000_000 - 301, 1_700_000_000 + 301, 0, u64::MAX] {
        assert_eq!(
            check_timestamp(timestamp, five_minutes, now),
            Err(VerifyError::TimestampOutsideTolerance)
        );
    }
}

#[test]
fn every_kind_has_its_own_name() {
    let errors = [
        VerifyError::MissingHeader("h".into()),
        VerifyError::MalformedHeader("h".into()),
        VerifyError::UnsupportedVersion("h".into()),
        VerifyError::TimestampOutsideTolerance,
        VerifyError::TimestampMalformed,
        VerifyError::NoMatch,
    ];
    let mut kinds: Vec<&str> = errors.iter().map(VerifyError::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), errors.len());
}

fn hmac_config(content: &str, timestamp_header: Option<&str>) -> Signature {
    Signature::Hmac(HmacSignature {
        secrets: vec![secret("s")],
        header: "x-signature".into(),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Hex,
        prefix: None,
        content: content.into(),
        timestamp_header: timestamp_header.map(str::to_owned),
        id_header: None,
        tolerance: Duration::from_secs(300),
    })
}

use hookyard_core::config::{HmacAlgorithm, SignatureEncoding};

#[test]
fn unusable_settings_are_found_at_start() {
    let unresolved = Signature::Github {
        secrets: vec![
            secret("ok"),
            Secret::try_from("${env:X}".to_owned()).expect("ref"),
        ],
    };
    assert_eq!(
        check(&unresolved),
        Err(SetupError::EmptySecret { index: 1 })
    );
    for bad in ["whsec_!!!", "whsec_", "plain", "whpk_c2hvcnQ=", ""] {
        let standard = Signature::StandardWebhooks {
            secrets: vec![secret("whsec_c2VjcmV0"), secret(bad)],
            tolerance: Duration::from_secs(300),
        };
        assert!(check(&standard).is_err(), "{bad:?}");
    }
    assert_eq!(check(&hmac_config("{body}", None)), Ok(()));
    assert_eq!(
        check(&hmac_config("{ts}.{body}", None)),
        Err(SetupError::BadSetting("content"))
    );
    assert_eq!(
        check(&hmac_config("{timestamp}.{body}", None)),
        Err(SetupError::BadSetting("content"))
    );
    assert_eq!(
        check(&hmac_config("{body}", Some("x-ts"))),
        Err(SetupError::BadSetting("content"))
    );
    assert_eq!(
        check(&hmac_config("{timestamp}.{body}", Some("x ts"))),
        Err(SetupError::BadSetting("header"))
    );
}

#[test]
fn messages_never_contain_the_secret() {
    let signature = Signature::Github {
        secrets: vec![secret("It's a Secret to Everybody")],
    };
    let h = headers(&[("x-hub-signature-256", "sha256=00")]);
    let error = verify(&signature, &h, b"Hello, World!", at(0)).expect_err("refused");
    assert!(!error.to_string().contains("Secret to Everybody"));
    assert!(!format!("{error:?}").contains("Secret to Everybody"));
}

proptest! {
    #[test]
    fn timestamp_parsing_never_panics(text in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = parse_timestamp(&text);
    }

    #[test]
    fn timestamps_round_trip(t in any::<u64>()) {
        prop_assert_eq!(parse_timestamp(t.to_string().as_bytes()), Ok(t));
    }
}
