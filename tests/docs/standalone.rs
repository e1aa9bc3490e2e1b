//! The repository stands on its own: its code, docs and scripts point at no file outside it
//! (a sibling checkout, a path of the machine it was written on) and at no tracker entry by
//! number ("Issue 6"), which a reader of the repository cannot follow.

use std::path::Path;

/// Text that would point outside the repository.
const OUTSIDE: [&str; 6] = [
    "../shared",
    "DESIGN.md",
    "STYLE.md",
    "MACHINE.md",
    "/work/",
    // Spelled in two parts, so this list is not itself a pointer.
    concat!("later", " issue"),
];

/// Source, docs, scripts and build files: where such a pointer could be written.
fn checked(name: &str) -> bool {
    [
        ".rs", ".md", ".sh", ".toml", ".yml", ".yaml", ".proto", ".conf",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
        || name == "Dockerfile"
        || name == "run"
}

/// `issue` (any case) followed by a number, as in "Issue 6" or "Issue #12".
fn names_an_issue(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.match_indices("issue").any(|(at, word)| {
        let rest = lower[at + word.len()..].trim_start_matches([' ', '#']);
        rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// Every line of a checked file holding such a pointer, as `path:line: text`.
pub fn outside_references(root: &Path) -> Vec<String> {
    let this_file = Path::new(file!()).file_name();
    let mut found = Vec::new();
    for path in crate::files(root, checked) {
        if path.file_name() == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if OUTSIDE.iter().any(|p| line.contains(p)) || names_an_issue(line) {
                let shown = path.strip_prefix(root).unwrap_or(&path).display();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn issue_numbers_are_recognised_and_ordinary_words_are_not() {
    assert!(names_an_issue("//! the benchmark suite of Issue 6"));
    assert!(names_an_issue("see Issue #12"));
    assert!(!names_an_issue("an issue with the partner"));
    assert!(!names_an_issue("issued 3 tokens"));
}
