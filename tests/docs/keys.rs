//! The keys of the integration file, read from the config model's source: every field of a type
//! that derives `Deserialize` (as serde names it: `rename`, `rename_all`), every enum tag
//! (`tag = "type"`) and every variant name a user writes as a value (`type = "http"`,
//! `algorithm = "sha256"`). Types with a hand-written `Deserialize` (expressions) are read by
//! their own code and have no keys here.

use std::path::Path;

use syn::{Attribute, Fields, Item, LitStr};

/// One key and where it is defined.
#[derive(Debug)]
pub struct Key {
    pub name: String,
    pub defined_in: String,
}

/// Every key of the `.rs` files in `dir` (not recursive: the model lives in one folder).
pub fn of_model(dir: &Path) -> Vec<Key> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the config folder exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("readable source");
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            of_source(&text, &name)
        })
        .collect()
}

/// Every key of one source file.
pub fn of_source(text: &str, file: &str) -> Vec<Key> {
    let parsed = syn::parse_file(text).unwrap_or_else(|e| panic!("{file} does not parse: {e}"));
    let mut keys = Vec::new();
    let mut push = |name: String, item: &str| {
        keys.push(Key {
            name,
            defined_in: format!("{file}: {item}"),
        });
    };
    for item in &parsed.items {
        match item {
            Item::Struct(s) if derives_deserialize(&s.attrs) => {
                let serde = Serde::of(&s.attrs);
                if serde.converted {
                    continue;
                }
                for name in field_keys(&s.fields, &serde) {
                    push(name, &s.ident.to_string());
                }
            }
            Item::Enum(e) if derives_deserialize(&e.attrs) => {
                let serde = Serde::of(&e.attrs);
                if serde.untagged {
                    continue;
                }
                if let Some(tag) = &serde.tag {
                    push(tag.clone(), &e.ident.to_string());
                }
                for variant in &e.variants {
                    let own = Serde::of(&variant.attrs);
                    if own.skip {
                        continue;
                    }
                    let name = own
                        .rename
                        .clone()
                        .unwrap_or_else(|| serde.case(&variant.ident.to_string()));
                    push(name, &format!("{}::{}", e.ident, variant.ident));
                    for field in field_keys(&variant.fields, &own) {
                        push(field, &format!("{}::{}", e.ident, variant.ident));
                    }
                }
            }
            _ => {}
        }
    }
    keys
}

/// Whether the page describes `key`: as code (`` `key` ``) or written in an example (`key =`).
pub fn documented(page: &str, key: &str) -> bool {
    page.contains(&format!("`{key}`"))
        || page.contains(&format!("{key} ="))
        || page.contains(&format!("\"{key}\""))
}

fn field_keys(fields: &Fields, container: &Serde) -> Vec<String> {
    let Fields::Named(named) = fields else {
        return Vec::new();
    };
    named
        .named
        .iter()
        .filter_map(|f| {
            let serde = Serde::of(&f.attrs);
            if serde.skip || serde.flatten {
                return None;
            }
            let ident = f.ident.as_ref()?.to_string();
            Some(serde.rename.unwrap_or_else(|| container.field_case(&ident)))
        })
        .collect()
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|a| {
            let mut found = false;
            let _ = a.parse_nested_meta(|meta| {
                if meta
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Deserialize")
                {
                    found = true;
                }
                Ok(())
            });
            found
        })
}

/// The serde attributes that change what a user writes.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<String>,
    tag: Option<String>,
    untagged: bool,
    skip: bool,
    flatten: bool,
    /// Read as another type (`from`/`try_from`), so its fields are not keys.
    converted: bool,
}

impl Serde {
    fn of(attrs: &[Attribute]) -> Self {
        let mut out = Self::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let _ = attr.parse_nested_meta(|meta| {
                let name = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                match name.as_str() {
                    "rename" => out.rename = Some(meta.value()?.parse::<LitStr>()?.value()),
                    "rename_all" => {
                        out.rename_all = Some(meta.value()?.parse::<LitStr>()?.value());
                    }
                    "tag" => out.tag = Some(meta.value()?.parse::<LitStr>()?.value()),
                    "untagged" => out.untagged = true,
                    "skip" | "skip_deserializing" => out.skip = true,
                    "flatten" => out.flatten = true,
                    "from" | "try_from" => {
                        let _: LitStr = meta.value()?.parse()?;
                        out.converted = true;
                    }
                    _ => {
                        // Other attributes (`default = "…"`, `with = "…"`) carry a value too.
                        if meta.input.peek(syn::Token![=]) {
                            let _: syn::Expr = meta.value()?.parse()?;
                        }
                    }
                }
                Ok(())
            });
        }
        out
    }

    /// A variant's name under `rename_all`.
    fn case(&self, ident: &str) -> String {
        match self.rename_all.as_deref() {
            Some("snake_case") => snake(ident),
            Some("kebab-case") => snake(ident).replace('_', "-"),
            Some("lowercase") => ident.to_lowercase(),
            _ => ident.to_owned(),
        }
    }

    /// A field's name under `rename_all` (fields are already snake case).
    fn field_case(&self, ident: &str) -> String {
        match self.rename_all.as_deref() {
            Some("kebab-case") => ident.replace('_', "-"),
            _ => ident.to_owned(),
        }
    }
}

/// `OAuth2ClientCredentials` → `o_auth2_client_credentials`, as serde's `snake_case` does.
fn snake(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.char_indices() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
