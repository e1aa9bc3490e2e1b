use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/shop-erp-carrier.toml");

fn env_all(name: &str) -> Option<String> {
    matches!(
        name,
        "SHOP_WEBHOOK_PASSWORD" | "ERP_CLIENT_SECRET" | "CARRIER_PASSWORD"
    )
    .then(|| format!("value-of-{name}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match Integration::parse(text, &env_all) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

fn keys(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.key).collect()
}

#[test]
fn example_is_valid_and_resolves_secrets() {
    let i = Integration::parse(EXAMPLE, &env_all).expect("example is valid");
    assert_eq!(i.sources.len(), 1);
    assert_eq!(i.handlers.len(), 3);
    let ConnectionAuth::OAuth2ClientCredentials { client_secret, .. } = &i.connections["erp"].auth
    else {
        panic!("erp uses oauth2");
    };
    let client_secret = client_secret.as_ref().expect("client secret");
    assert_eq!(client_secret.expose(), "value-of-ERP_CLIENT_SECRET");
}

#[test]
fn example_routes_fan_out_order_events() {
    let i = Integration::parse(EXAMPLE, &env_all).expect("valid");
    assert_eq!(
        i.handlers_for("shop", "order.created"),
        ["orders", "order-audit"]
    );
    assert_eq!(i.handlers_for("shop", "shipment.updated"), ["shipments"]);
    assert!(i.handlers_for("shop", "customer.deleted").is_empty());
}

#[test]
fn missing_secret_names_key_and_variable() {
    let err = Integration::parse(EXAMPLE, &|n| {
        (n != "CARRIER_PASSWORD").then(|| "x".to_owned())
    })
    .expect_err("missing secret");
    let p = &err.problems()[0];
    assert_eq!(p.key, "connections.carrier.auth.password");
    assert!(p.message.contains("CARRIER_PASSWORD"));
    assert_eq!(err.problems().len(), 1);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = EXAMPLE
        .replace("connection = \"carrier\"", "connection = \"carrier-typo\"")
        .replace("handlers = [\"shipments\"]", "handlers = [\"shipmnts\"]")
        .replace("max_deliver = 3", "max_deliver = 3\nretries = 4");
    let keys = keys(&text);
    assert!(
        keys.contains(&"handlers.shipments.steps[0].connection".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"routes[3].handlers[0]".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"handlers.order-audit.retries".to_owned()),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn problems_point_at_lines() {
    let text = "[sources.a]\npath = \"/a\"\nbogus = 1\n";
    let p = problems(text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "sources.a.bogus");
    assert_eq!(p[0].line, Some(3));
}

#[test]
fn literal_secret_is_refused_without_echoing_it() {
    let text = "[connections.c]\nbase_url = \"https://x.example\"\nauth = { type = \"basic\", username = \"u\", password = \"hunter2-literal\" }\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(3));
    assert!(p[0].key.starts_with("connections.c.auth"), "{:?}", p[0]);
    assert!(!p[0].to_string().contains("hunter2"), "{}", p[0]);
}

#[test]
fn invalid_values_are_named() {
    let text = r#"
[sources.s]
path = "hooks"
methods = ["post"]

[[routes]]
event = ""
source = "nope"
handlers = []

[handlers.h]
steps = []
max_deliver = 0

[connections.c]
base_url = "ftp://x"
"#;
    let keys = keys(text);
    for k in [
        "sources.s.path",
        "sources.s.methods[0]",
        "routes[0].event",
        "routes[0].source",
        "routes[0].handlers",
        "handlers.h.steps",
        "handlers.h.max_deliver",
        "connections.c.base_url",
    ] {
        assert!(keys.contains(&k.to_owned()), "{k} missing from {keys:?}");
    }
}

#[test]
fn bad_jq_fails_at_load() {
    let text = "[sources.s]\npath = \"/s\"\nevent_type = { jq = \".type | (\" }\n";
    let p = problems(text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "sources.s.event_type");
}

#[test]
fn a_whole_path_from_a_header_needs_path_raw() {
    let step = |extra: &str| {
        format!(
            "[handlers.h]\nsteps = [{{ type = \"http\", connection = \"c\", path = {{ header = \"X-Path\" }}{extra} }}]\n\n[connections.c]\nbase_url = \"https://c.example\"\n"
        )
    };
    assert_eq!(keys(&step("")), ["handlers.h.steps[0].path"]);
    assert!(problems(&step(", path_raw = true")).is_empty());
    let text = "[handlers.h]\nsteps = [{ type = \"http\", connection = \"c\", path = { jq = '@text \"/\\(.id)\"' } }]\n\n[connections.c]\nbase_url = \"https://c.example\"\n";
    // A format string would bypass the encoding of interpolated values.
    assert_eq!(keys(text), ["handlers.h.steps"]);
}

#[test]
fn unknown_key_inside_tagged_auth_is_an_error() {
    let text = "[sources.s]\npath = \"/s\"\nauth = { type = \"basic\", username = \"u\", password = \"${env:ERP_CLIENT_SECRET}\", pasword = \"x\" }\n";
    assert_eq!(problems(text).len(), 1);
}

#[test]
fn patterns() {
    assert!(pattern_matches("order.created", "order.created"));
    assert!(!pattern_matches("order.created", "order.created2"));
    assert!(pattern_matches("order.*", "order.cancelled"));
    assert!(!pattern_matches("order.*", "shipment.updated"));
    assert!(pattern_matches("*", "anything"));
    assert!(pattern_matches("*.updated", "shipment.updated"));
    assert!(pattern_matches("a*b*c", "a-x-b-y-c"));
    assert!(!pattern_matches("ab*ba", "aba"));
}

#[test]
fn a_service_resolves_only_the_secrets_in_its_scope() {
    let only_shop = |n: &str| (n == "SHOP_WEBHOOK_PASSWORD").then(|| "p".to_owned());
    let i = Integration::parse_scoped(EXAMPLE, &only_shop, SecretScope::Sources).expect("ingress");
    let SourceAuth::Basic {
        password: Some(password),
        ..
    } = &i.sources["shop"].auth
    else {
        panic!("basic")
    };
    assert_eq!(password.expose(), "p");
    let ConnectionAuth::Basic { password, .. } = &i.connections["carrier"].auth else {
        panic!("basic")
    };
    assert_eq!(password.expose(), "", "connection secrets stay unresolved");
    assert!(Integration::parse_scoped(EXAMPLE, &|_| None, SecretScope::None).is_ok());
    let err = Integration::parse_scoped(EXAMPLE, &only_shop, SecretScope::Connections)
        .expect_err("connection secrets missing");
    assert_eq!(err.problems().len(), 2);
    let only_erp = |n: &str| (n == "ERP_CLIENT_SECRET").then(|| "e".to_owned());
    let i = Integration::parse_scoped(EXAMPLE, &only_erp, SecretScope::OAuth2Clients)
        .expect("token needs only the OAuth 2.0 client secret");
    let ConnectionAuth::OAuth2ClientCredentials { client_secret, .. } = &i.connections["erp"].auth
    else {
        panic!("oauth2")
    };
    let client_secret = client_secret.as_ref().expect("client secret");
    assert_eq!(client_secret.expose(), "e");
}

/// One source per signature scheme, as the README shows them.
const SIGNED: &str = r#"
[sources.standard]
path = "/hooks/standard"
signature = { scheme = "standard_webhooks", secrets = ["${env:SW_SECRET}", "${env:SW_PUBLIC_KEY}"] }

[sources.github]
path = "/hooks/github"
signature = { scheme = "github", secrets = ["${env:GH_SECRET}"] }

[sources.stripe]
path = "/hooks/stripe"
signature = { scheme = "stripe", secrets = ["${env:STRIPE_SECRET}"], tolerance = "3m" }

[sources.shopify]
path = "/hooks/shopify"
signature = { scheme = "shopify", secrets = ["${env:SHOPIFY_SECRET}"] }

[sources.slack]
path = "/hooks/slack"
signature = { scheme = "slack", secrets = ["${env:SLACK_SECRET}"] }

[sources.custom]
path = "/hooks/custom"

[sources.custom.signature]
scheme = "hmac"
secrets = ["${env:CUSTOM_OLD}", "${env:CUSTOM_NEW}"]
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
prefix = "sha512="
content = "{id}.{timestamp}.{body}"
timestamp_header = "X-Timestamp"
id_header = "X-Delivery"
tolerance = "90s"
"#;

fn env_signed(name: &str) -> Option<String> {
    Some(format!("value-of-{name}"))
}

fn signed_source(text: &str, signature: &str) -> String {
    format!("{text}[sources.s]\npath = \"/s\"\nsignature = {signature}\n")
}

fn signature_problems(signature: &str) -> Vec<Problem> {
    match Integration::parse(&signed_source("", signature), &env_signed) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn every_signature_scheme_parses_and_its_secrets_resolve_for_ingress() {
    let i = Integration::parse_scoped(SIGNED, &env_signed, SecretScope::Sources).expect("valid");
    let five_minutes = std::time::Duration::from_secs(300);
    let signature = |name: &str| i.sources[name].signature.clone().expect("signed");
    let Signature::StandardWebhooks { secrets, tolerance } = signature("standard") else {
        panic!("standard_webhooks")
    };
    assert_eq!(tolerance, five_minutes);
    let values: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    assert_eq!(values, ["value-of-SW_SECRET", "value-of-SW_PUBLIC_KEY"]);
    assert!(matches!(signature("github"), Signature::Github { .. }));
    let Signature::Stripe { tolerance, .. } = signature("stripe") else {
        panic!("stripe")
    };
    assert_eq!(tolerance, std::time::Duration::from_secs(180));
    assert!(matches!(signature("shopify"), Signature::Shopify { .. }));
    assert!(
        matches!(signature("slack"), Signature::Slack { tolerance, .. } if tolerance == five_minutes)
    );
    let Signature::Hmac(hmac) = signature("custom") else {
        panic!("hmac")
    };
    assert_eq!(hmac.header, "X-Signature");
    assert_eq!(hmac.algorithm, HmacAlgorithm::Sha512);
    assert_eq!(hmac.encoding, SignatureEncoding::Base64);
    assert_eq!(hmac.prefix.as_deref(), Some("sha512="));
    assert_eq!(hmac.timestamp_header.as_deref(), Some("X-Timestamp"));
    assert_eq!(hmac.id_header.as_deref(), Some("X-Delivery"));
    assert_eq!(hmac.tolerance, std::time::Duration::from_secs(90));
    assert_eq!(hmac.secrets[1].expose(), "value-of-CUSTOM_NEW");
}

#[test]
fn hmac_signature_defaults_to_hex_sha256_of_the_body() {
    let text = signed_source(
        "",
        r#"{ scheme = "hmac", secrets = ["${env:S}"], header = "X-Sig" }"#,
    );
    let i = Integration::parse(&text, &env_signed).expect("valid");
    let Some(Signature::Hmac(hmac)) = &i.sources["s"].signature else {
        panic!("hmac")
    };
    assert_eq!(hmac.algorithm, HmacAlgorithm::Sha256);
    assert_eq!(hmac.encoding, SignatureEncoding::Hex);
    assert_eq!(hmac.prefix, None);
    assert_eq!(hmac.content, "{body}");
    assert_eq!(hmac.tolerance, std::time::Duration::from_secs(300));
}

#[test]
fn signature_secrets_stay_unresolved_outside_the_sources_scope() {
    let i = Integration::parse_scoped(SIGNED, &|_| None, SecretScope::Connections)
        .expect("no source secret is needed");
    assert_eq!(
        i.sources["github"]
            .signature
            .as_ref()
            .expect("signed")
            .secrets()[0]
            .expose(),
        ""
    );
    let err = Integration::parse_scoped(
        SIGNED,
        &|n| (n != "CUSTOM_NEW").then(|| "x".to_owned()),
        SecretScope::Sources,
    )
    .expect_err("one secret missing");
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["sources.custom.signature.secrets[1]"]);
}

#[test]
fn signature_needs_at_least_one_secret_and_refuses_literals() {
    let p = signature_problems(r#"{ scheme = "github", secrets = [] }"#);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "sources.s.signature.secrets");
    let p = signature_problems(r#"{ scheme = "github", secrets = ["hunter2-literal"] }"#);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(!p[0].to_string().contains("hunter2"), "{}", p[0]);
}

#[test]
fn unknown_scheme_or_key_in_a_signature_is_an_error() {
    assert_eq!(
        signature_problems(r#"{ scheme = "gitlab", secrets = ["${env:S}"] }"#).len(),
        1
    );
    // GitHub signatures carry no timestamp, so a tolerance would be a silent no-op.
    assert_eq!(
        signature_problems(r#"{ scheme = "github", secrets = ["${env:S}"], tolerance = "5m" }"#)
            .len(),
        1
    );
    assert_eq!(
        signature_problems(r#"{ scheme = "slack", secret = ["${env:S}"] }"#).len(),
        1
    );
    assert_eq!(
        signature_problems(
            r#"{ scheme = "hmac", secrets = ["${env:S}"], header = "X-Sig", encoding = "base32" }"#
        )
        .len(),
        1
    );
}

#[test]
fn zero_tolerance_is_refused() {
    let p =
        signature_problems(r#"{ scheme = "stripe", secrets = ["${env:S}"], tolerance = "0s" }"#);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "sources.s.signature.tolerance");
}

#[test]
fn hmac_header_and_content_template_are_checked() {
    let hmac = |extra: &str| {
        signature_problems(&format!(
            r#"{{ scheme = "hmac", secrets = ["${{env:S}}"], {extra} }}"#
        ))
        .into_iter()
        .map(|p| p.key)
        .collect::<Vec<_>>()
    };
    let header = "sources.s.signature.header";
    let content = "sources.s.signature.content";
    assert_eq!(hmac(r#"header = """#), [header]);
    assert_eq!(hmac(r#"header = "X Sig""#), [header]);
    assert_eq!(
        hmac(r#"header = "X-Sig", timestamp_header = "", content = "{timestamp}.{body}""#),
        ["sources.s.signature.timestamp_header"]
    );
    for bad in [
        "{body}.{nonce}",
        "{body",
        "{timestamp}.{body}",
        "{id}.{body}",
        "",
    ] {
        assert_eq!(
            hmac(&format!(r#"header = "X-Sig", content = "{bad}""#)),
            [content],
            "{bad:?}"
        );
    }
    assert_eq!(
        hmac(r#"header = "X-Sig", timestamp_header = "X-Ts""#),
        [content],
        "an unsigned timestamp is refused"
    );
    assert!(
        hmac(r#"header = "X-Sig", timestamp_header = "X-Ts", id_header = "X-Id", content = "v1:{id}:{timestamp}:{body}}""#)
            .is_empty()
    );
}

#[test]
fn content_templates_split_into_parts() {
    use ContentPart::{Body, Id, Literal, Timestamp};
    assert_eq!(content_parts("{body}"), Ok(vec![Body]));
    assert_eq!(
        content_parts("v0:{timestamp}:{body}"),
        Ok(vec![Literal("v0:"), Timestamp, Literal(":"), Body])
    );
    assert_eq!(
        content_parts("{id}.{timestamp}.{body}}"),
        Ok(vec![
            Id,
            Literal("."),
            Timestamp,
            Literal("."),
            Body,
            Literal("}")
        ])
    );
    assert_eq!(content_parts(""), Ok(vec![]));
    assert!(content_parts("{}").is_err());
    assert!(content_parts("{Body}").is_err());
    assert!(content_parts("{body").is_err());
}

#[test]
fn reply_mistakes_are_named_by_key() {
    let text = r#"
[sources.s]
path = "/s"
reply = { mode = "sync", deadline = "10m", status = 500, headers = { "Content-Length" = "1", "X-Ok" = "{oops}" }, body = "{event_id} {nope}" }

[handlers.h]
[[handlers.h.steps]]
type = "reply"
status = 99
headers = { "Transfer-Encoding" = "chunked" }
"#;
    let keys: Vec<String> = problems(text).into_iter().map(|p| p.key).collect();
    for key in [
        "sources.s.reply.status",
        "sources.s.reply.deadline",
        "sources.s.reply.headers.Content-Length",
        "sources.s.reply.headers.X-Ok",
        "sources.s.reply.body",
        "handlers.h.steps[0].status",
        "handlers.h.steps[0].headers.Transfer-Encoding",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}

#[test]
fn a_signature_scheme_brings_its_dedup_preset_unless_a_key_is_set() {
    let text = r#"
[sources.stripe]
path = "/stripe"
signature = { scheme = "stripe", secrets = ["${env:S}"] }

[sources.own]
path = "/own"
signature = { scheme = "github", secrets = ["${env:S}"] }
dedup_key = { header = "X-Own-Id" }

[sources.plain]
path = "/plain"
"#;
    let i = Integration::parse(text, &|_| Some("secret-value".to_owned())).expect("valid");
    let expr = |name: &str| i.sources[name].dedup_expr().map(|e| format!("{e:?}"));
    assert_eq!(expr("stripe").as_deref(), Some("Jq(\".id\")"));
    assert_eq!(expr("own").as_deref(), Some("Header(\"X-Own-Id\")"));
    assert_eq!(expr("plain"), None);
}

#[test]
fn the_dedup_window_is_long_with_a_sender_id_and_off_for_a_body_hash() {
    let text = r#"
[sources.stripe]
path = "/stripe"
signature = { scheme = "stripe", secrets = ["${env:S}"] }

[sources.keyed]
path = "/keyed"
dedup_key = { header = "X-Id" }

[sources.keyed-off]
path = "/keyed-off"
dedup_key = { header = "X-Id" }
dedup_window = "0s"

[sources.plain]
path = "/plain"

[sources.plain-opted-in]
path = "/plain-opted-in"
dedup_window = "12h"
"#;
    let i = Integration::parse(text, &|_| Some("secret-value".to_owned())).expect("valid");
    let window = |name: &str| i.sources[name].effective_dedup_window();
    let week = crate::streams::StreamLimits::DEFAULT_DEDUP_WINDOW;
    assert_eq!(week, std::time::Duration::from_secs(7 * 24 * 3600));
    assert_eq!(window("stripe"), Some(week));
    assert_eq!(window("keyed"), Some(week));
    assert_eq!(window("keyed-off"), None);
    assert_eq!(window("plain"), None);
    assert_eq!(
        window("plain-opted-in"),
        Some(std::time::Duration::from_secs(12 * 3600))
    );
}

#[test]
fn a_bad_or_too_long_dedup_window_is_named_by_key() {
    let source = |window: &str| format!("[sources.s]\npath = \"/s\"\ndedup_window = {window}\n");
    for bad in ["\"3 fortnights\"", "\"soon\"", "3600", "\"-1h\""] {
        let p = problems(&source(bad));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert_eq!(p[0].key, "sources.s.dedup_window", "{bad}: {p:?}");
        assert_eq!(p[0].line, Some(3), "{bad}: {p:?}");
    }
    let p = problems(&source("\"8d\""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "sources.s.dedup_window");
    assert!(p[0].message.contains("at most 7days"), "{}", p[0]);
    assert!(problems(&source("\"7d\"")).is_empty());
    assert!(problems(&source("\"0s\"")).is_empty());
}

#[test]
fn a_polling_source_has_no_dedup_window() {
    let text = "[sources.p]\ndedup_window = \"1h\"\npoll = { connection = \"c\", path = \"/x\", every = \"1m\", record_id = \".id\" }\n\n[connections.c]\nbase_url = \"https://x.example\"\n";
    assert!(keys(text).contains(&"sources.p.dedup_window".to_owned()));
}
