//! The documentation stays true to the repository: every relative link of every Markdown page
//! resolves (file and heading), the README stays a front door that links every reference page,
//! every key of the integration file's model is described in `docs/configuration.md`, and the
//! repository stands on its own (no pointer to files outside it or to the tracker).

mod keys;
mod links;
mod standalone;

use std::path::{Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The repository's files (outside build output and VCS data) whose name `keep` accepts.
fn files(root: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                    dirs.push(path);
                }
            } else if keep(&name) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_relative_link_resolves() {
    let broken = links::broken(&root());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_short_and_links_every_reference_page() {
    let root = root();
    let readme = read(&root.join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines, at most 300");
    let mut pages: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    let unlinked: Vec<&String> = pages
        .iter()
        .filter(|page| !readme.contains(&format!("(docs/{page})")))
        .collect();
    assert!(
        unlinked.is_empty(),
        "docs pages the README does not link: {unlinked:?}"
    );
}

#[test]
fn every_integration_file_key_is_in_the_configuration_reference() {
    let root = root();
    let keys = keys::of_model(&root.join("crates/core/src/config"));
    // The model has dozens of keys; an empty list would mean the parser lost track of it.
    assert!(keys.len() > 50, "found only {} keys", keys.len());
    let page = read(&root.join("docs/configuration.md"));
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| !keys::documented(&page, &k.name))
        .map(|k| format!("{} ({})", k.name, k.defined_in))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of the integration file missing from docs/configuration.md:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_key_parser_reads_fields_renames_and_tags() {
    let source = r#"
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Source {
            /// doc
            pub path: String,
            #[serde(rename = "max-body")]
            pub max_body_bytes: u64,
            #[serde(skip)]
            pub hidden: u8,
        }
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum Auth {
            None,
            ApiKey { header: Option<String> },
            #[serde(rename = "oauth2_client_credentials")]
            OAuth2 { token_url: String },
        }
        #[derive(Debug)]
        pub struct NotConfig { pub ignored: u8 }
    "#;
    let mut names: Vec<String> = keys::of_source(source, "t.rs")
        .into_iter()
        .map(|k| k.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api_key",
            "header",
            "max-body",
            "none",
            "oauth2_client_credentials",
            "path",
            "token_url",
            "type"
        ]
    );
}

#[test]
fn the_ready_to_paste_sources_load() {
    let page = read(&root().join("docs/providers.md"));
    let toml = links::code_blocks(&page, "toml").join("\n");
    assert!(toml.contains("[sources."), "no sources on the page");
    // Any value stands in for the secrets the examples reference; signature secrets in the
    // format their scheme wants.
    let secret = |name: &str| {
        Some(if name.contains("STANDARD") || name.contains("SVIX") {
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()
        } else {
            "example-secret-value".to_owned()
        })
    };
    if let Err(errors) = hookyard_core::Integration::parse(&toml, &secret) {
        panic!("docs/providers.md does not load:\n{errors}");
    }
}

#[test]
fn the_repository_stands_on_its_own() {
    let found = standalone::outside_references(&root());
    assert!(
        found.is_empty(),
        "references outside the repository:\n{}",
        found.join("\n")
    );
}
