//! A source's dedup key: where the sender's delivery id is, written as an expression or named by
//! a provider preset.
//!
//! The presets follow each provider's documented id of a delivery, which stays the same when the
//! provider retries it:
//!
//! | preset | id | provider's guidance |
//! |---|---|---|
//! | `standard_webhooks` | `webhook-id` header, else `svix-id` | "the same ID on retries" (Standard Webhooks spec) |
//! | `github` | `X-GitHub-Delivery` header | GUID of the delivery, kept by redeliveries |
//! | `stripe` | `.id` of the body (`evt_…`) | Stripe: guard against duplicate events by their id |
//! | `shopify` | `X-Shopify-Event-Id` header | Shopify: "Ignore duplicate webhooks" |
//! | `slack` | `.event_id` of the body | Slack Events API: `event_id`, unique per event |
//!
//! A source with a signature scheme that has a preset and no `dedup_key` uses that preset, so a
//! Stripe source deduplicates by event id without further configuration. When the id is
//! missing from a request (a Slack interaction payload has no `event_id`), the key falls back
//! to the hash of the body, as for any expression that gives no value.

use serde::Deserialize;

use super::Signature;
use crate::expr::{Expr, Jq};

/// A provider whose delivery id ingress knows where to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupPreset {
    /// The `webhook-id` header, else `svix-id` (Svix's name for it).
    StandardWebhooks,
    /// The `X-GitHub-Delivery` header.
    Github,
    /// The event id, `.id` of the JSON body.
    Stripe,
    /// The `X-Shopify-Event-Id` header.
    Shopify,
    /// The Events API `event_id` of the JSON body.
    Slack,
}

impl DedupPreset {
    /// The expression that reads the id.
    pub fn expr(self) -> Expr {
        match self {
            Self::StandardWebhooks => {
                Expr::FirstHeader(vec!["webhook-id".to_owned(), "svix-id".to_owned()])
            }
            Self::Github => Expr::Header("X-GitHub-Delivery".to_owned()),
            Self::Shopify => Expr::Header("X-Shopify-Event-Id".to_owned()),
            Self::Stripe => jq(".id"),
            Self::Slack => jq(".event_id"),
        }
    }

    /// The preset that goes with a signature scheme, if that scheme belongs to a provider.
    pub fn of_signature(signature: &Signature) -> Option<Self> {
        match signature {
            Signature::StandardWebhooks { .. } => Some(Self::StandardWebhooks),
            Signature::Github { .. } => Some(Self::Github),
            Signature::Stripe { .. } => Some(Self::Stripe),
            Signature::Shopify { .. } => Some(Self::Shopify),
            Signature::Slack { .. } => Some(Self::Slack),
            Signature::Hmac(_) => None,
        }
    }
}

fn jq(filter: &str) -> Expr {
    // The presets' filters are constants that compile; a failure here is a bug in this file.
    Expr::Jq(Jq::compile(filter).expect("preset jq filters compile"))
}

/// Where a source's dedup key comes from: `{ preset = "stripe" }` or any expression
/// (`{ header = "X-Delivery-Id" }`, `{ jq = ".id" }`).
#[derive(Debug, Clone)]
pub enum DedupKey {
    /// A provider's documented delivery id.
    Preset(DedupPreset),
    /// An expression over the request.
    Expr(Expr),
}

impl DedupKey {
    /// The expression ingress evaluates.
    pub fn expr(&self) -> Expr {
        match self {
            Self::Preset(preset) => preset.expr(),
            Self::Expr(expr) => expr.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetTable {
    preset: DedupPreset,
}

impl<'de> Deserialize<'de> for DedupKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Buffered once, then read as a preset table or as an expression, so each form keeps
        // its own error message.
        let value = serde_json::Value::deserialize(d)?;
        if let Some(preset) = value.as_object().and_then(|o| o.get("preset")) {
            return PresetTable::deserialize(&value)
                .map(|t| Self::Preset(t.preset))
                .map_err(|_| {
                    D::Error::custom(format!(
                        "unknown dedup preset {preset}: expected one of \"standard_webhooks\", \
                         \"github\", \"stripe\", \"shopify\", \"slack\" (and no other keys)"
                    ))
                });
        }
        Expr::deserialize(&value)
            .map(Self::Expr)
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Input;
    use hookyard_proto::event::v1::Header;

    fn parse(toml_text: &str) -> Result<DedupKey, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            dedup_key: DedupKey,
        }
        toml::from_str::<Wrapper>(toml_text)
            .map(|w| w.dedup_key)
            .map_err(|e| e.to_string())
    }

    fn eval(key: &DedupKey, headers: &[(&str, &str)], body: &[u8]) -> Option<String> {
        let headers: Vec<Header> = headers
            .iter()
            .map(|(n, v)| Header {
                name: (*n).to_owned(),
                value: v.as_bytes().to_vec(),
            })
            .collect();
        key.expr()
            .eval_string(&Input::new(&headers, body, serde_json::json!({})))
            .ok()
            .flatten()
    }

    #[test]
    fn every_preset_reads_its_providers_delivery_id() {
        /// Preset, request headers, body, the id it must read.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8], &'a str);
        let cases: [Case<'_>; 6] = [
            (
                "standard_webhooks",
                &[("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")],
                b"{}",
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            ),
            (
                "standard_webhooks",
                &[("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")],
                b"{}",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
            ),
            (
                "github",
                &[("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")],
                b"{}",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            ),
            (
                "stripe",
                &[],
                br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event"}"#,
                "evt_1NG8Du2eZvKYlo2CUI79vXWy",
            ),
            (
                "shopify",
                &[("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5")],
                b"{}",
                "98880550-7158-44d4-b7cd-2c97c8a091b5",
            ),
            (
                "slack",
                &[],
                br#"{"type":"event_callback","event_id":"Ev0PV52K21"}"#,
                "Ev0PV52K21",
            ),
        ];
        for (preset, headers, body, id) in cases {
            let key = parse(&format!("dedup_key = {{ preset = \"{preset}\" }}"))
                .unwrap_or_else(|e| panic!("{preset}: {e}"));
            assert!(matches!(key, DedupKey::Preset(_)), "{preset}");
            assert_eq!(eval(&key, headers, body).as_deref(), Some(id), "{preset}");
        }
    }

    #[test]
    fn a_missing_id_gives_no_value_so_the_body_hash_is_used() {
        let key = parse("dedup_key = { preset = \"slack\" }").expect("parses");
        assert_eq!(eval(&key, &[], br#"{"type":"block_actions"}"#), None);
        let key = parse("dedup_key = { preset = \"github\" }").expect("parses");
        assert_eq!(eval(&key, &[], b"{}"), None);
    }

    #[test]
    fn expressions_still_work_and_bad_presets_are_named() {
        let key = parse("dedup_key = { header = \"X-Id\" }").expect("parses");
        assert!(matches!(key, DedupKey::Expr(Expr::Header(_))));
        let key = parse("dedup_key = { jq = \".delivery\" }").expect("parses");
        assert!(matches!(key, DedupKey::Expr(Expr::Jq(_))));
        let error = parse("dedup_key = { preset = \"paypal\" }").expect_err("unknown preset");
        assert!(error.contains("paypal"), "{error}");
        let error =
            parse("dedup_key = { preset = \"github\", jq = \".x\" }").expect_err("extra key");
        assert!(error.contains("no other keys"), "{error}");
        assert!(parse("dedup_key = { jq = \"..[\" }").is_err());
    }
}
