//! The layering ARCHITECTURE.md describes, checked on the source: the rules and the store never
//! call back up into the HTTP API or the command line, and clap stays at the edge.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Lines of code (not comments) of `file` that mention `needle` as a whole path segment
/// (`super::api` names the module `api`, not `api_keys`).
fn mentions(file: &Path, needle: &str) -> Vec<String> {
    let whole = |line: &str| {
        line.match_indices(needle).any(|(at, _)| {
            !line[at + needle.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//") && whole(line))
        .map(|(number, line)| format!("{}:{}: {}", file.display(), number + 1, line.trim()))
        .collect()
}

#[test]
fn the_rules_and_the_store_never_import_the_http_api_or_the_command_line() {
    let mut upward = Vec::new();
    for layer in ["auth", "accounts", "db", "domain"] {
        for file in rust_files(&src().join(layer)) {
            for needle in ["crate::api", "crate::cli", "super::api", "super::cli"] {
                upward.extend(mentions(&file, needle));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run back up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn clap_is_used_only_by_the_command_line_and_the_configuration() {
    let mut elsewhere = Vec::new();
    for file in rust_files(&src()) {
        let name = file.strip_prefix(src()).unwrap();
        if name == Path::new("cli.rs") || name == Path::new("config.rs") {
            continue;
        }
        elsewhere.extend(mentions(&file, "clap"));
    }
    assert!(
        elsewhere.is_empty(),
        "clap outside cli.rs and config.rs:\n{}",
        elsewhere.join("\n")
    );
}
