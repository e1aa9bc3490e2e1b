//! Relative links of Markdown pages: `[text](path)`, `[text](path#heading)` and `[text](#heading)`
//! must name an existing file and, for a Markdown target, one of its headings (GitHub's anchors).

use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Every Markdown page of the repository.
fn pages(root: &Path) -> Vec<PathBuf> {
    crate::files(root, |name| name.ends_with(".md"))
}

/// The link destinations of a page, and its heading anchors.
fn parse(text: &str) -> (Vec<String>, Vec<String>) {
    let mut links = Vec::new();
    let mut anchors = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(text, Options::all()) {
        match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push(dest_url.into_string());
            }
            Event::Start(Tag::Heading { .. }) => {
                heading = Some(String::new());
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    anchors.push(slug(&h));
                }
            }
            _ => {}
        }
    }
    (links, anchors)
}

/// GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The text of every fenced code block of `language`.
pub fn code_blocks(text: &str, language: &str) -> Vec<String> {
    use pulldown_cmark::CodeBlockKind;
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new_ext(text, Options::all()) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) if &*lang == language => {
                current = Some(String::new());
            }
            Event::Text(t) => {
                if let Some(block) = current.as_mut() {
                    block.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

fn is_external(link: &str) -> bool {
    link.contains("://") || link.starts_with("mailto:")
}

/// Every broken relative link, as `page: link (why)`.
pub fn broken(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for page in pages(root) {
        let Ok(text) = std::fs::read_to_string(&page) else {
            continue;
        };
        let (links, own_anchors) = parse(&text);
        let shown = page
            .strip_prefix(root)
            .unwrap_or(&page)
            .display()
            .to_string();
        for link in links.iter().filter(|l| !is_external(l)) {
            let (path, anchor) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let anchors = if path.is_empty() {
                own_anchors.clone()
            } else {
                let target = page.parent().unwrap_or(root).join(path);
                if !target.exists() {
                    out.push(format!("{shown}: {link} (no such file)"));
                    continue;
                }
                if anchor.is_empty() || !path.ends_with(".md") {
                    continue;
                }
                parse(&std::fs::read_to_string(&target).unwrap_or_default()).1
            };
            if !anchor.is_empty() && !anchors.iter().any(|a| a == anchor) {
                out.push(format!("{shown}: {link} (no such heading)"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_github() {
        assert_eq!(
            slug("Rotating keys and secrets"),
            "rotating-keys-and-secrets"
        );
        assert_eq!(
            slug("`[sources.NAME]` — listen endpoints (ingress)"),
            "sourcesname--listen-endpoints-ingress"
        );
    }

    #[test]
    fn links_in_code_blocks_are_not_links() {
        let (links, anchors) = parse("# A b\n\n[x](y.md#a-b)\n\n```\n[z](nowhere.md)\n```\n");
        assert_eq!(links, ["y.md#a-b"]);
        assert_eq!(anchors, ["a-b"]);
    }
}
