use super::*;
use hookyard_core::config::{Secret, SecretRef};

fn header(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("valid header value")
}

fn basic(raw: &[u8]) -> HeaderValue {
    header(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

fn parse(value: &HeaderValue) -> Result<(String, String), AuthError> {
    parse_basic(value).map(|c| (c.username, c.password))
}

#[test]
fn valid_credentials_parse() {
    assert_eq!(
        parse(&basic(b"shop:s3cret")),
        Ok(("shop".into(), "s3cret".into()))
    );
}

#[test]
fn scheme_is_case_insensitive_and_padding_optional() {
    assert_eq!(
        parse(&header("bAsIc   c2hvcDpz")),
        Ok(("shop".into(), "s".into()))
    );
    // "a:bc" is YTpiYw== with padding
    assert_eq!(
        parse(&header("Basic YTpiYw")),
        Ok(("a".into(), "bc".into()))
    );
}

#[test]
fn password_may_contain_colons() {
    assert_eq!(
        parse(&basic(b"shop:a:b::c")),
        Ok(("shop".into(), "a:b::c".into()))
    );
    assert_eq!(parse(&basic(b":")), Ok((String::new(), String::new())));
}

#[test]
fn bad_base64_is_malformed() {
    assert_eq!(
        parse(&header("Basic !!!notbase64")),
        Err(AuthError::Malformed)
    );
    assert_eq!(parse(&header("Basic c2hv cDpz")), Err(AuthError::Malformed));
}

#[test]
fn missing_colon_is_malformed() {
    assert_eq!(parse(&basic(b"shops3cret")), Err(AuthError::Malformed));
}

#[test]
fn other_schemes_are_refused() {
    assert_eq!(parse(&header("Bearer abc")), Err(AuthError::WrongScheme));
    assert_eq!(parse(&header("Basicc2hvcDpz")), Err(AuthError::WrongScheme));
    assert_eq!(parse(&header("c2hvcDpz")), Err(AuthError::WrongScheme));
}

#[test]
fn empty_values_are_refused() {
    assert_eq!(parse(&header("")), Err(AuthError::WrongScheme));
    assert_eq!(parse(&header("Basic")), Err(AuthError::Malformed));
    assert_eq!(parse(&header("Basic   ")), Err(AuthError::Malformed));
}

#[test]
fn non_utf8_is_malformed() {
    let raw = HeaderValue::from_bytes(b"Basic \xff\xfe").expect("opaque header value");
    assert_eq!(parse(&raw), Err(AuthError::Malformed));
    assert_eq!(parse(&basic(b"shop:\xff\xfe")), Err(AuthError::Malformed));
}

#[test]
fn huge_header_is_malformed_without_decoding() {
    let huge = "A".repeat(1024 * 1024);
    assert_eq!(
        parse(&header(&format!("Basic {huge}"))),
        Err(AuthError::Malformed)
    );
}

fn authenticator() -> Authenticator {
    Authenticator::new(&SourceAuth::Basic {
        username: "shop".into(),
        password: Some(secret("pa:ss")),
        passwords: vec![],
    })
}

fn secret(value: &str) -> Secret {
    Secret::from_value(SecretRef::Env("S".into()), value)
}

fn headers(values: &[HeaderValue]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(AUTHORIZATION, v.clone());
    }
    map
}

#[test]
fn check_accepts_only_the_configured_pair() {
    let auth = authenticator();
    assert_eq!(auth.check(&headers(&[basic(b"shop:pa:ss")]), None), Ok(()));
    assert_eq!(
        auth.check(&headers(&[basic(b"shop:pa:sx")]), None),
        Err(AuthError::Rejected)
    );
    assert_eq!(
        auth.check(&headers(&[basic(b"shoq:pa:ss")]), None),
        Err(AuthError::Rejected)
    );
    assert_eq!(
        auth.check(&headers(&[basic(b"shop:pa")]), None),
        Err(AuthError::Rejected)
    );
    assert_eq!(auth.check(&headers(&[]), None), Err(AuthError::Missing));
    assert_eq!(
        auth.check(
            &headers(&[basic(b"shop:pa:ss"), basic(b"shop:pa:ss")]),
            None
        ),
        Err(AuthError::Malformed)
    );
}

#[test]
fn none_accepts_anything() {
    let auth = Authenticator::new(&SourceAuth::None);
    assert_eq!(auth.check(&headers(&[]), None), Ok(()));
    assert!(auth.consumed_header().is_none());
}

#[test]
fn debug_output_hides_secrets() {
    let text = format!("{:?}", authenticator());
    assert_eq!(text, "Basic(..)");
    let creds = parse_basic(&basic(b"shop:pa:ss")).expect("valid");
    assert!(!format!("{creds:?}").contains("pa:ss"));
}

#[test]
fn every_rotated_password_is_accepted() {
    let auth = Authenticator::new(&SourceAuth::Basic {
        username: "shop".into(),
        password: None,
        passwords: vec![secret("old"), secret("new")],
    });
    assert_eq!(auth.check(&headers(&[basic(b"shop:old")]), None), Ok(()));
    assert_eq!(auth.check(&headers(&[basic(b"shop:new")]), None), Ok(()));
    assert_eq!(
        auth.check(&headers(&[basic(b"shop:ne")]), None),
        Err(AuthError::Rejected)
    );
    assert_eq!(auth.consumed_header(), Some(&AUTHORIZATION));
}

fn query_basic() -> Authenticator {
    Authenticator::new(&SourceAuth::QueryBasic {
        param: "boomi_auth".into(),
        username: "boomi".into(),
        password: None,
        passwords: vec![secret("p+w"), secret("two")],
    })
}

#[test]
fn query_basic_reads_base64_pairs_from_the_parameter() {
    let auth = query_basic();
    let none = HeaderMap::new();
    let token = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    let q = format!("a=1&boomi_auth={}", token(b"boomi:p+w"));
    assert_eq!(auth.check(&none, Some(&q)), Ok(()));
    // Percent-encoded base64 ("+" and "=") and the second password.
    let q = format!("boomi_auth={}", token(b"boomi:two").replace('=', "%3D"));
    assert_eq!(auth.check(&none, Some(&q)), Ok(()));
    let q = format!("boomi_auth={}", token(b"boomi:three"));
    assert_eq!(auth.check(&none, Some(&q)), Err(AuthError::KeyRejected));
    let q = format!("boomi_auth={}", token(b"other:two"));
    assert_eq!(auth.check(&none, Some(&q)), Err(AuthError::KeyRejected));
    for bad in [
        "boomi_auth=!!!",
        "boomi_auth=%ff%fe",
        "boomi_auth=Ym9vbWk",
        "boomi_auth=a&boomi_auth=b",
    ] {
        assert_eq!(
            auth.check(&none, Some(bad)),
            Err(AuthError::KeyMalformed),
            "{bad}"
        );
    }
    assert_eq!(auth.check(&none, None), Err(AuthError::KeyMissing));
    assert_eq!(
        auth.check(&none, Some("boomi_auth=")),
        Err(AuthError::KeyMissing)
    );
    // Credentials in the header do not count.
    assert_eq!(
        auth.check(&headers(&[basic(b"boomi:two")]), None),
        Err(AuthError::KeyMissing)
    );
    assert!(!AuthError::KeyMissing.challenges());
    assert_eq!(auth.stored_query("a=1&boomi_auth=x&b=2"), "a=1&b=2");
    assert!(auth.consumed_header().is_none());
}

#[test]
fn api_keys_in_a_header_or_query_match_any_configured_key() {
    let header = Authenticator::new(&SourceAuth::ApiKey {
        header: Some("X-Api-Key".into()),
        query: None,
        keys: vec![secret("k1"), secret("k2")],
    });
    let with_key = |values: &[&'static str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-api-key", HeaderValue::from_static(v));
        }
        h
    };
    assert_eq!(header.check(&with_key(&["k1"]), None), Ok(()));
    assert_eq!(header.check(&with_key(&["k2"]), None), Ok(()));
    assert_eq!(
        header.check(&with_key(&["k3"]), None),
        Err(AuthError::KeyRejected)
    );
    assert_eq!(
        header.check(&with_key(&["k"]), None),
        Err(AuthError::KeyRejected)
    );
    assert_eq!(
        header.check(&with_key(&[""]), None),
        Err(AuthError::KeyMissing)
    );
    assert_eq!(
        header.check(&with_key(&[]), Some("x-api-key=k1")),
        Err(AuthError::KeyMissing)
    );
    assert_eq!(
        header.check(&with_key(&["k1", "k1"]), None),
        Err(AuthError::KeyMalformed)
    );
    assert_eq!(
        header.consumed_header().map(HeaderName::as_str),
        Some("x-api-key")
    );
    assert_eq!(header.stored_query("api_key=k1"), "api_key=k1");

    let query = Authenticator::new(&SourceAuth::ApiKey {
        header: None,
        query: Some("api_key".into()),
        keys: vec![secret("k/1+")],
    });
    let none = HeaderMap::new();
    assert_eq!(query.check(&none, Some("api_key=k%2F1+")), Ok(()));
    assert_eq!(query.check(&none, Some("api_key=k/1+")), Ok(()));
    assert_eq!(
        query.check(&none, Some("api_key=k/1")),
        Err(AuthError::KeyRejected)
    );
    assert_eq!(
        query.check(&none, Some("api_key")),
        Err(AuthError::KeyMissing)
    );
    assert_eq!(query.check(&none, None), Err(AuthError::KeyMissing));
    assert_eq!(query.stored_query("x=1&api_key=k%2F1+"), "x=1");
    assert!(query.consumed_header().is_none());
    assert!(!format!("{query:?}").contains("k/1"));
}
